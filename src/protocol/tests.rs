use bytes::{BufMut, Bytes, BytesMut};

use super::*;

fn verify_frame(id: u32, selector: &[u8], token: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    encode_verify(&mut b, id, selector, token);
    b
}

#[test]
fn verify_request_has_the_documented_layout() {
    let b = verify_frame(7, b"", b"eyJ");
    assert_eq!(
        &b[..],
        &[0, 0, 0, 12, 1, 1, 0, 0, 0, 0, 0, 7, 0, b'e', b'y', b'J'][..]
    );
}

#[test]
fn reply_has_the_documented_layout() {
    let mut b = BytesMut::new();
    Reply::Valid {
        id: 7,
        cached: false,
        anomalies: Anomalies::NONE,
        claims: Bytes::from_static(br#"{"sub":"a"}"#),
    }
    .encode(&mut b);
    let mut want = vec![0, 0, 0, 0x13, 1, 0, 0, 0, 0, 0, 0, 7];
    want.extend_from_slice(br#"{"sub":"a"}"#);
    assert_eq!(&b[..], &want[..]);

    let mut b = BytesMut::new();
    Reply::Invalid {
        id: 9,
        reason: Reject::Expired,
    }
    .encode(&mut b);
    let mut want = vec![0, 0, 0, 15, 1, 1, 0, 14, 0, 0, 0, 9];
    want.extend_from_slice(b"expired");
    assert_eq!(&b[..], &want[..]);
}

#[test]
fn cached_valid_reply_sets_the_high_code_bit() {
    let mut b = BytesMut::new();
    Reply::Valid {
        id: 1,
        cached: true,
        anomalies: Anomalies::X5C,
        claims: Bytes::new(),
    }
    .encode(&mut b);
    assert_eq!(&b[6..8], &[0x80, 0x08]);
}

#[test]
fn request_fed_byte_by_byte_decodes_once_complete() {
    let whole = verify_frame(42, b"api", b"a.b.c");
    let mut buf = BytesMut::new();
    for (i, byte) in whole.iter().enumerate() {
        buf.put_u8(*byte);
        let got = decode_request(&mut buf, DEFAULT_MAX_FRAME).unwrap();
        if i + 1 < whole.len() {
            assert_eq!(got, None, "decoded early at byte {i}");
        } else {
            assert_eq!(
                got,
                Some(Request {
                    id: 42,
                    op: Op::Verify {
                        selector: Bytes::from_static(b"api"),
                        token: Bytes::from_static(b"a.b.c"),
                        context: None,
                    },
                })
            );
        }
    }
    assert!(buf.is_empty());
}

#[test]
fn pipelined_requests_decode_in_order() {
    let mut buf = BytesMut::new();
    for id in 0..100 {
        encode_verify(&mut buf, id, b"", format!("tok{id}").as_bytes());
        encode_ping(&mut buf, 1000 + id);
    }
    for id in 0..100 {
        let r = decode_request(&mut buf, DEFAULT_MAX_FRAME)
            .unwrap()
            .unwrap();
        assert_eq!(r.id, id);
        assert!(matches!(r.op, Op::Verify { ref token, .. } if *token == format!("tok{id}")));
        let p = decode_request(&mut buf, DEFAULT_MAX_FRAME)
            .unwrap()
            .unwrap();
        assert_eq!(
            p,
            Request {
                id: 1000 + id,
                op: Op::Ping
            }
        );
    }
    assert_eq!(decode_request(&mut buf, DEFAULT_MAX_FRAME).unwrap(), None);
}

fn raw(len: u32, version: u8, op: u8, flags: u16, id: u32, body: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_u32(len);
    b.put_u8(version);
    b.put_u8(op);
    b.put_u16(flags);
    b.put_u32(id);
    b.put_slice(body);
    b
}

#[test]
fn malformed_frames_are_errors_with_the_id_when_readable() {
    let cases = [
        (raw(9, 2, 1, 0, 5, b"\0"), 5, ProtocolError::BadVersion),
        (raw(9, 1, 9, 0, 6, b"\0"), 6, ProtocolError::BadOp),
        (raw(9, 1, 1, 1, 7, b"\0"), 7, ProtocolError::BadFlags),
        (raw(8, 1, 1, 0, 8, b""), 8, ProtocolError::FrameTooShort),
        (
            raw(10, 1, 1, 0, 9, b"\x05x"),
            9,
            ProtocolError::FrameTooShort,
        ),
        (raw(4, 1, 1, 0, 10, b""), 0, ProtocolError::FrameTooShort),
        (
            raw(1 << 20, 1, 1, 0, 11, b""),
            11,
            ProtocolError::FrameTooLarge,
        ),
    ];
    for (mut buf, id, error) in cases {
        assert_eq!(
            decode_request(&mut buf, DEFAULT_MAX_FRAME),
            Err(DecodeError { id, error }),
            "{error:?}"
        );
    }
    // Too large is known from the length alone, before the id arrives.
    let mut b = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
    assert_eq!(
        decode_request(&mut b, DEFAULT_MAX_FRAME),
        Err(DecodeError {
            id: 0,
            error: ProtocolError::FrameTooLarge
        })
    );
}

#[test]
fn only_unknown_selector_keeps_the_connection() {
    assert!(!ProtocolError::UnknownSelector.is_fatal());
    assert!(ProtocolError::BadVersion.is_fatal());
    assert!(ProtocolError::FrameTooLarge.is_fatal());
}

#[test]
fn every_reply_round_trips() {
    let replies = [
        Reply::Valid {
            id: 1,
            cached: true,
            anomalies: Anomalies::JKU,
            claims: Bytes::from_static(b"{}"),
        },
        Reply::Invalid {
            id: 2,
            reason: Reject::AlgNone,
        },
        Reply::Undecided {
            id: 3,
            cause: Cause::NoKeys,
        },
        Reply::Pong { id: 4, ready: true },
        Reply::Pong {
            id: 5,
            ready: false,
        },
        Reply::Error {
            id: 5,
            error: ProtocolError::UnknownSelector,
        },
        Reply::Done {
            id: 6,
            key: Bytes::from_static(b"jwtd:{-}:sub:alice"),
        },
        Reply::Error {
            id: 7,
            error: ProtocolError::BadRevoke,
        },
    ];
    let mut buf = BytesMut::new();
    for r in &replies {
        r.encode(&mut buf);
    }
    for r in replies {
        assert_eq!(decode_reply(&mut buf, DEFAULT_MAX_FRAME).unwrap(), Some(r));
    }
    assert!(buf.is_empty());
}

#[test]
fn unknown_statuses_and_codes_are_kept_not_fatal() {
    let mut buf = BytesMut::new();
    // An INVALID with a reason code from the future, then a new status.
    for (status, code) in [(1u8, 999u16), (9, 0)] {
        buf.put_u32(8 + 3);
        buf.put_u8(VERSION);
        buf.put_u8(status);
        buf.put_u16(code);
        buf.put_u32(5);
        buf.put_slice(b"new");
    }
    for (status, code) in [(1u8, 999u16), (9, 0)] {
        assert_eq!(
            decode_reply(&mut buf, DEFAULT_MAX_FRAME).unwrap(),
            Some(Reply::Other {
                id: 5,
                status,
                code,
                body: Bytes::from_static(b"new"),
            })
        );
    }
}

#[test]
fn revoke_requests_carry_their_json_body_and_errors_keep_the_connection() {
    let mut buf = BytesMut::new();
    encode_revoke(&mut buf, 9, br#"{"sub":"alice"}"#);
    assert_eq!(&buf[4..6], &[VERSION, 3], "op 3");
    let request = decode_request(&mut buf, DEFAULT_MAX_FRAME)
        .unwrap()
        .unwrap();
    assert_eq!(
        request,
        Request {
            id: 9,
            op: Op::Revoke {
                body: Bytes::from_static(br#"{"sub":"alice"}"#)
            }
        }
    );
    assert!(!ProtocolError::BadRevoke.is_fatal());
    assert!(!ProtocolError::RevokeFailed.is_fatal());
}

#[test]
fn reject_codes_are_unique_and_round_trip() {
    for r in Reject::ALL {
        assert_eq!(reject_from_code(reject_code(r)), Some(r), "{r}");
    }
    assert_eq!(reject_from_code(0), None);
    assert_eq!(
        reject_code(Reject::Expired),
        14,
        "codes are part of the protocol"
    );
    assert_eq!(reject_code(Reject::Revoked), 24);
}

#[test]
fn undecided_causes_keep_their_documented_codes_and_round_trip() {
    let causes = [
        (Cause::NoKeys, 1),
        (Cause::Overloaded, 2),
        (Cause::RevocationUnavailable, 3),
    ];
    for (cause, code) in causes {
        assert_eq!(cause_code(cause), code, "codes are part of the protocol");
        assert_eq!(cause_from_code(code), Some(cause));
    }
    assert_eq!(cause_from_code(0), None);
    assert_eq!(cause_from_code(4), None);
}

#[test]
fn anomaly_bits_round_trip_one_flag_each() {
    let mut seen = 0;
    for a in Anomalies::ALL {
        let bits = anomaly_bits(a);
        assert_eq!(bits.count_ones(), 1, "{a:?}");
        assert_eq!(seen & bits, 0, "{a:?} shares a bit");
        seen |= bits;
        assert_eq!(anomalies_from_bits(bits), a);
    }
    assert_eq!(seen, 0x0f, "the four bits docs/protocol.md names");
    assert_eq!(
        anomalies_from_bits(0xf0),
        Anomalies::NONE,
        "unknown bits dropped"
    );
}

#[test]
fn revoke_requests_parse_or_are_refused() {
    assert_eq!(
        parse_revoke(br#"{"jti":"t1","exp":99,"iss":"i"}"#, 5),
        Some((
            Some("i".to_owned()),
            Revoke::Jti {
                jti: "t1".to_owned(),
                exp: 99
            }
        ))
    );
    assert_eq!(
        parse_revoke(br#"{"sub":"alice"}"#, 5),
        Some((
            None,
            Revoke::Subject {
                sub: "alice".to_owned(),
                before: 5
            }
        ))
    );
    for bad in [
        // Mistyped or misspelt members never widen a jti into a subject.
        &br#"{"jti":5,"sub":"alice"}"#[..],
        br#"{"jti":null,"sub":"alice"}"#,
        br#"{"sub":"alice","exp":123}"#,
        br#"{"sub":"alice","befor":5}"#,
        br#"{"jti":"t1"}"#,
        br#"{"jti":"t1","sub":"a","exp":1}"#,
        br#"{"sub":""}"#,
        br#"{"sub":"a","before":"soon"}"#,
        br#"{"sub":"a","iss":7}"#,
        br#"["sub"]"#,
        b"not json",
    ] {
        assert_eq!(
            parse_revoke(bad, 5),
            None,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}
