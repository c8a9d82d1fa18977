#![no_main]
//! HTTP request bodies as `flowbot serve` reads them: the bytes after the first one parsed by the
//! server's JSON body reader into the request type the first byte picks (start an instance,
//! task or incident variables, a message, a signal, an admin deployment). A body that does not
//! parse must give a 400 problem, never a panic.

use flowbot_http::admin::DeployBody;
use flowbot_http::api::{MessageBody, SignalBody, StartBody, VariablesBody};
use flowbot_http::extract::parse_json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let status = match kind % 5 {
        0 => parse_json::<StartBody>(body).err(),
        1 => parse_json::<VariablesBody>(body).err(),
        2 => parse_json::<MessageBody>(body).err(),
        3 => parse_json::<SignalBody>(body).err(),
        _ => parse_json::<DeployBody>(body).err(),
    }
    .map(|error| error.status());
    assert!(status.is_none_or(|s| s.as_u16() == 400), "{status:?}");
});
