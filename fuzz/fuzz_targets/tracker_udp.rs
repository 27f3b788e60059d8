#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_tracker::fuzzing::udp_packet(data));
