//! The property the `utp_connection` fuzz target checks, shared with the test that
//! replays its regression corpus. It panics when an invariant breaks.

use std::time::{Duration, Instant};

use crate::connection::{Config, Connection, Read};
use crate::packet::Packet;

/// A connection in the middle of a transfer takes hostile datagrams: `data` is a run of
/// (length byte, datagram) pairs, each parsed as uTP and, if it parses, sent to the
/// accepting side under its connection id (what an attacker who knows it could do),
/// between rounds of honest traffic. Never a panic; what the connection sends still
/// parses and stays within a datagram's size; what it lets the application read stays
/// within its receive window on top of what was honestly sent; and honest rounds go on
/// afterwards without a panic.
pub fn utp_connection(data: &[u8]) {
    let config = Config {
        receive_buffer: 64 * 1024,
        ..Config::default()
    };
    let max_datagram = 20 + config.max_payload + 2 + 32;
    let mut now = Instant::now();
    let mut client = Connection::connect(config.clone(), 1000, 40_000, now);
    let syn = Packet::parse(&client.poll_transmit(now).expect("a SYN")).expect("our SYN");
    let mut server = Connection::accept(config.clone(), &syn, 65_530, now);
    let payload: Vec<u8> = (0..48 * 1024).map(|i| (i % 251) as u8).collect();
    let (mut written, mut read) = (0, 0);
    let mut buf = vec![0; 16 * 1024];
    // One round: each side's datagrams reach the other, the client writes, the server
    // reads, and time moves on by `step`.
    let mut round = |client: &mut Connection, server: &mut Connection, now: &mut Instant| {
        written += client.write(&payload[written..]);
        while let Some(datagram) = client.poll_transmit(*now) {
            if let Ok(packet) = Packet::parse(&datagram) {
                server.handle_packet(&packet, *now);
            }
        }
        while let Some(datagram) = server.poll_transmit(*now) {
            assert!(datagram.len() <= max_datagram, "{} bytes", datagram.len());
            let packet = Packet::parse(&datagram).expect("what we send parses");
            client.handle_packet(&packet, *now);
        }
        while let Read::Data(n) = server.read(&mut buf) {
            read += n;
        }
        assert!(
            read <= written + config.receive_buffer,
            "{read} bytes read, {written} written"
        );
        *now += Duration::from_millis(20);
        for end in [&mut *client, &mut *server] {
            if let Some(at) = end.poll_timeout() {
                if at <= *now {
                    end.handle_timeout(*now);
                }
            }
        }
    };
    for _ in 0..4 {
        round(&mut client, &mut server, &mut now);
    }
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (datagram, tail) = tail.split_at(len);
        rest = tail;
        if let Ok(mut packet) = Packet::parse(datagram) {
            packet.connection_id = server.recv_id();
            server.handle_packet(&packet, now);
        }
        round(&mut client, &mut server, &mut now);
    }
    for _ in 0..20 {
        round(&mut client, &mut server, &mut now);
    }
}
