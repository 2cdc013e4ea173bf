//! The one request pipeline (issue 12), attacked from outside: what every
//! front hands the verifier, and what must never leak out of it.

use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::json;

use crate::support::{Jwtd, exchange};

/// A route refusing a token found in the query string: the route stage's
/// debug log names the path, and the query it cuts must not come with it
/// (it carries the token).
#[test]
fn a_query_token_is_never_logged_with_the_route_path() {
    let front = Jwtd::builder()
        .http_front()
        .config(
            r#"
            [[routes]]
            prefix = "/api/admin/"
            scopes = ["admin"]
        "#,
        )
        .args(["--token-query", "access_token", "--log", "debug"])
        .start();
    let token = front.token(json!({"scope": "read"}));
    let mut s = UnixStream::connect(front.http_socket()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let a = exchange(
        &mut s,
        &format!(
            "GET /verify HTTP/1.0\r\nX-Original-URI: /api/admin/users?access_token={token}\r\n\r\n"
        ),
    );
    assert_eq!(a.status, 403, "{a:?}");
    // The refusal was logged (so the check below looked at the right line).
    front.wait_log("token lacks what the route requires");
    let log = front.log();
    let signature = token.rsplit('.').next().expect("a signature");
    assert!(
        !log.contains(signature),
        "the token is in the log{}",
        front.log_report()
    );
}
