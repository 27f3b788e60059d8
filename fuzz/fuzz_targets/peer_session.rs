#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_wire::fuzzing::peer_session(data));
