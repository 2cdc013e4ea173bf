//! The native protocol's decoders on arbitrary bytes: requests (VERIFY,
//! VERIFY_CTX with its TLV fields, PING, REVOKE and its JSON body) and
//! replies, frame after frame, as a connection reads them.
#![no_main]

use bytes::BytesMut;
use jwtd::protocol::{self, Op};
use libfuzzer_sys::fuzz_target;

const MAX_FRAME: usize = 65_536;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    for _ in 0..256 {
        match protocol::decode_request(&mut buf, MAX_FRAME) {
            Ok(Some(request)) => {
                if let Op::Revoke { body } = &request.op {
                    let _ = protocol::parse_revoke(body, jwtd_fuzz::NOW);
                }
            }
            Ok(None) => break,
            Err(e) if e.error.is_fatal() => break,
            Err(_) => {}
        }
    }
    let mut buf = BytesMut::from(data);
    for _ in 0..256 {
        match protocol::decode_reply(&mut buf, MAX_FRAME) {
            Ok(Some(reply)) => {
                // What decodes must encode.
                let mut out = BytesMut::new();
                reply.encode(&mut out);
            }
            Ok(None) | Err(_) => break,
        }
    }
});
