//! Command-line behaviour of jwtd check / mint / keygen.
