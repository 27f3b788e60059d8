//! The "Metadata and paths" and "Bencode" items of the project's bad-input list, each a
//! test, plus round trips with the builder.

use super::*;
use shoal_hash::PieceDigest;

/// A valid info dictionary for `total` bytes split into `files`, with zeroed hashes.
fn info(files: Option<Vec<Value>>, total: i64, piece_length: i64) -> Value {
    let mut info = Value::dict();
    info.insert("name", "test");
    info.insert("piece length", piece_length);
    let count = (total + piece_length - 1) / piece_length;
    info.insert("pieces", vec![0u8; count as usize * 20]);
    match files {
        Some(f) => info.insert("files", Value::List(f)),
        None => info.insert("length", total),
    }
    info
}

fn file(path: &[&[u8]], length: i64) -> Value {
    let mut f = Value::dict();
    f.insert("length", length);
    f.insert(
        "path",
        Value::List(path.iter().map(|c| Value::Bytes(c.to_vec())).collect()),
    );
    f
}

fn torrent(info: Value) -> Vec<u8> {
    let mut t = Value::dict();
    t.insert("announce", "http://127.0.0.1:1/announce");
    t.insert("info", info);
    t.to_bytes()
}

fn parse(info: Value) -> Result<Metainfo, MetainfoError> {
    Metainfo::from_bytes(&torrent(info))
}

fn paths(m: &Metainfo) -> Vec<String> {
    m.info.files.iter().map(FileEntry::display_path).collect()
}

#[test]
fn single_and_multi_file() {
    let m = parse(info(None, 100_000, 16384)).unwrap();
    assert_eq!(
        (m.info.piece_count(), m.info.total_length, m.info.multi_file),
        (7, 100_000, false)
    );
    assert_eq!(m.info.piece_size(6), 100_000 - 6 * 16384);
    assert_eq!(paths(&m), ["test"]);
    assert_eq!(m.trackers, [["http://127.0.0.1:1/announce"]]);

    let files = vec![
        file(&[b"a", b"b.bin"], 20_000),
        file(&[b"empty"], 0),
        file(&[b"c"], 30_000),
    ];
    let m = parse(info(Some(files), 50_000, 16384)).unwrap();
    assert_eq!(paths(&m), ["test/a/b.bin", "test/empty", "test/c"]);
    assert_eq!(
        m.info.files.iter().map(|f| f.offset).collect::<Vec<_>>(),
        [0, 20_000, 20_000]
    );
}

#[test]
fn item1_dot_dot_components_are_dropped() {
    let m = parse(info(
        Some(vec![file(&[b"a", b"..", b"..", b"x"], 10)]),
        10,
        16384,
    ))
    .unwrap();
    assert_eq!(paths(&m), ["test/a/x"]);
}

#[test]
fn item2_separators_inside_an_element() {
    let m = parse(info(
        Some(vec![file(&[b"x.avi /../../Startup/e.exe"], 10)]),
        10,
        16384,
    ))
    .unwrap();
    assert_eq!(paths(&m), ["test/x.avi _.._.._Startup_e.exe"]);
    assert_eq!(m.info.files[0].path.len(), 2);
}

#[test]
fn item3_absolute_paths_become_relative() {
    for (raw, want) in [
        (&b"/etc/cron.d/x"[..], "_etc_cron.d_x"),
        (b"C:\\x", "C:_x"),
        (b"\\\\srv\\s", "__srv_s"),
    ] {
        let mut i = info(None, 10, 16384);
        i.insert("name", raw);
        assert_eq!(paths(&parse(i).unwrap()), [want]);
        let m = parse(info(Some(vec![file(&[raw], 10)]), 10, 16384)).unwrap();
        assert_eq!(paths(&m), [format!("test/{want}")]);
    }
}

#[test]
fn item4_unusable_names_become_the_info_hash() {
    for raw in [&b""[..], b".", b"..", b"\x01\x02", b"/"] {
        let mut i = info(None, 10, 16384);
        i.insert("name", raw);
        let m = parse(i).unwrap();
        assert_eq!(m.info.name, m.info_hash.to_hex());
        assert_eq!(paths(&m), [m.info_hash.to_hex()]);
    }
    let mut i = info(None, 10, 16384);
    if let Value::Dict(map) = &mut i {
        map.remove(&b"name"[..]);
    }
    let m = parse(i).unwrap();
    assert_eq!(m.info.name, m.info_hash.to_hex());
}

#[test]
fn item5_control_characters_invalid_utf8_and_bidi() {
    let m = parse(info(
        Some(vec![
            file(&[b"a\0b"], 1),
            file(&[b"\x1b[31mred"], 1),
            file(&[b"bad\xff\xfe"], 1),
            file(&["x\u{202E}fdp.exe".as_bytes()], 1),
        ]),
        4,
        16384,
    ))
    .unwrap();
    assert_eq!(
        paths(&m),
        ["test/a_b", "test/_[31mred", "test/bad__", "test/x_fdp.exe"]
    );
}

#[test]
fn web_seed_paths_keep_the_torrents_own_bytes() {
    let m = parse(info(
        Some(vec![
            file(&[b"sub", b"bad\xff"], 1),
            file(&[b"..", b"CON"], 1),
        ]),
        2,
        16384,
    ))
    .unwrap();
    assert_eq!(paths(&m), ["test/sub/bad_", "test/CON_"]);
    let url_paths: Vec<&Vec<Vec<u8>>> = m.info.files.iter().map(|f| &f.url_path).collect();
    assert_eq!(
        url_paths[0],
        &[b"test".to_vec(), b"sub".to_vec(), b"bad\xff".to_vec()]
    );
    assert_eq!(
        url_paths[1],
        &[b"test".to_vec(), b"..".to_vec(), b"CON".to_vec()]
    );
    let single = parse(info(None, 10, 16384)).unwrap();
    assert_eq!(single.info.files[0].url_path, [b"test".to_vec()]);
}

#[test]
fn name_utf8_is_preferred() {
    let mut i = info(None, 10, 16384);
    i.insert("name", &b"caf\xe9"[..]);
    i.insert("name.utf-8", "café");
    assert_eq!(parse(i).unwrap().info.name, "café");
}

#[test]
fn item6_symlink_targets_stay_inside() {
    let mut link = file(&[b"link"], 0);
    link.insert("attr", "l");
    link.insert(
        "symlink path",
        Value::List(vec![
            "..".into(),
            "..".into(),
            "etc".into(),
            "passwd".into(),
        ]),
    );
    let m = parse(info(Some(vec![link, file(&[b"data"], 10)]), 10, 16384)).unwrap();
    let entry = &m.info.files[0];
    assert!(entry.attr.symlink);
    assert_eq!(
        entry.symlink_target.as_deref(),
        Some(&["etc".to_string(), "passwd".to_string()][..])
    );

    let mut escape_only = file(&[b"link2"], 0);
    escape_only.insert("attr", "l");
    escape_only.insert("symlink path", Value::List(vec!["..".into()]));
    let m = parse(info(
        Some(vec![escape_only, file(&[b"data"], 10)]),
        10,
        16384,
    ))
    .unwrap();
    assert_eq!(m.info.files[0].symlink_target, None);
}

#[test]
fn item7_identical_paths_and_deep_paths() {
    let files: Vec<Value> = (0..10_000).map(|_| file(&[b"same"], 1)).collect();
    let m = parse(info(Some(files), 10_000, 16384)).unwrap();
    let unique: std::collections::HashSet<_> = paths(&m).into_iter().collect();
    assert_eq!(unique.len(), 10_000);

    let deep: Vec<&[u8]> = vec![b"d"; 101];
    assert_eq!(
        parse(info(Some(vec![file(&deep, 1)]), 1, 16384)),
        Err(MetainfoError::PathTooDeep)
    );
    let ok: Vec<&[u8]> = vec![b"d"; 100];
    assert!(parse(info(Some(vec![file(&ok, 1)]), 1, 16384)).is_ok());
}

#[test]
fn item8_bad_lengths() {
    assert_eq!(
        parse(info(None, -1, 16384)).unwrap_err(),
        MetainfoError::BadFileLength(-1)
    );
    assert_eq!(
        parse(info(None, 0, 16384)).unwrap_err(),
        MetainfoError::Empty
    );
    let big = vec![
        file(&[b"a"], i64::MAX),
        file(&[b"b"], i64::MAX),
        file(&[b"c"], 2),
    ];
    let mut i = info(Some(big), 1, 16384);
    i.insert("pieces", vec![0u8; 20]);
    assert_eq!(parse(i).unwrap_err(), MetainfoError::TotalOverflow);
    for bad in [0, -16384, 1 << 40] {
        let mut i = info(None, 10, 16384);
        i.insert("piece length", bad);
        assert_eq!(parse(i).unwrap_err(), MetainfoError::BadPieceLength(bad));
    }
    let mut i = info(None, 10, 16384);
    if let Value::Dict(map) = &mut i {
        map.remove(&b"piece length"[..]);
    }
    assert_eq!(
        parse(i).unwrap_err(),
        MetainfoError::Missing("piece length")
    );
    let mut i = info(None, 10, 16384);
    i.insert("length", "ten");
    assert!(matches!(
        parse(i).unwrap_err(),
        MetainfoError::WrongType { key: "length", .. }
    ));
}

#[test]
fn item9_pieces_must_match() {
    let mut i = info(None, 100_000, 16384);
    i.insert("pieces", vec![0u8; 7 * 20 + 1]);
    assert_eq!(
        parse(i).unwrap_err(),
        MetainfoError::PiecesNotMultipleOf20(141)
    );
    let mut i = info(None, 100_000, 16384);
    i.insert("pieces", vec![0u8; 6 * 20]);
    assert_eq!(
        parse(i).unwrap_err(),
        MetainfoError::PieceCountMismatch {
            expected: 7,
            found: 6
        }
    );
}

#[test]
fn item10_size_limits_come_first() {
    let huge = vec![b'x'; MAX_TORRENT_SIZE + 1];
    assert_eq!(
        Metainfo::from_bytes(&huge).unwrap_err(),
        MetainfoError::TooLarge(MAX_TORRENT_SIZE + 1)
    );
    // 2^21 + 1 pieces of 16 KiB: under the byte limit but over the piece limit.
    let count = MAX_PIECES + 1;
    let mut i = info(None, 1, 16384);
    i.insert("pieces", vec![0u8; count * 20]);
    i.insert("length", count as i64 * 16384);
    let bytes = torrent(i);
    assert!(
        bytes.len() > MAX_TORRENT_SIZE,
        "sanity: this one is refused by size"
    );
    assert_eq!(
        Metainfo::from_bytes(&bytes).unwrap_err(),
        MetainfoError::TooLarge(bytes.len())
    );
    let mut i = info(None, 1, 1);
    i.insert("pieces", vec![0u8; 400_001 * 20]);
    i.insert("length", 400_001i64);
    i.insert("piece length", 1i64);
    assert!(parse(i).is_ok(), "many pieces under both limits are fine");
}

#[test]
fn item11_to_14_bencode_errors_surface() {
    let mut deep = vec![b'l'; 1024];
    deep.extend(vec![b'e'; 1024]);
    assert!(matches!(
        Metainfo::from_bytes(&deep),
        Err(MetainfoError::Bencode(_))
    ));
    for bad in [
        &b"99999999999999999999:x"[..],
        b"d4:infoi9223372036854775808ee",
        b"i-e",
        b"i01e",
        b"i-0e",
        b"i12",
    ] {
        let err = Metainfo::from_bytes(bad).unwrap_err();
        assert!(matches!(err, MetainfoError::Bencode(_)), "{bad:?}: {err}");
        assert!(err.to_string().contains("at byte"), "{err}");
    }
}

#[test]
fn item15_every_truncation_fails_cleanly() {
    let files = vec![file(&[b"a", b"b"], 20_000), file(&[b"c"], 30_000)];
    let bytes = torrent(info(Some(files), 50_000, 16384));
    assert!(Metainfo::from_bytes(&bytes).is_ok());
    for cut in 0..bytes.len() {
        assert!(
            Metainfo::from_bytes(&bytes[..cut]).is_err(),
            "prefix of {cut} bytes parsed"
        );
    }
}

#[test]
fn item16_info_hash_is_over_raw_bytes() {
    // Keys out of order and a duplicate: a re-encoding would sort and drop them.
    let pieces = [0u8; 20];
    let mut raw_info = b"d6:lengthi10e4:name1:b4:name1:a12:piece lengthi16384e6:pieces20:".to_vec();
    raw_info.extend_from_slice(&pieces);
    raw_info.push(b'e');
    let mut bytes = b"d4:info".to_vec();
    bytes.extend_from_slice(&raw_info);
    bytes.push(b'e');
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(m.info_hash, InfoHash::of_info(&raw_info));
    assert_ne!(
        m.info_hash,
        InfoHash::of_info(
            &decode(&raw_info, Limits::default())
                .unwrap()
                .root()
                .to_value()
                .to_bytes()
        )
    );
    assert_eq!(m.info.name, "b", "the first of duplicate keys wins");
    assert_eq!(m.info_bytes, raw_info);
}

#[test]
fn trackers_tiers_private_and_unknown_keys() {
    let mut t = Value::dict();
    let mut i = info(None, 10, 16384);
    i.insert("private", 1i64);
    t.insert("info", i);
    t.insert("announce", "http://ignored/announce");
    t.insert(
        "announce-list",
        Value::List(vec![
            Value::List(vec![
                "udp://a:1".into(),
                "http://b/announce".into(),
                Value::Int(3),
            ]),
            Value::List(vec![]),
            Value::List(vec!["udp://a:1".into(), "http://c/announce".into()]),
        ]),
    );
    t.insert("url-list", "http://seed/file");
    t.insert(
        "nodes",
        Value::List(vec![
            Value::List(vec!["dht.example".into(), Value::Int(6881)]),
            Value::List(vec!["no port".into()]),
        ]),
    );
    t.insert("x-custom", Value::List(vec![Value::Int(1)]));
    t.insert("comment", "hello");
    t.insert("creation date", 1_700_000_000i64);
    let bytes = t.to_bytes();
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert!(m.info.private);
    assert_eq!(
        m.trackers,
        vec![
            vec!["udp://a:1", "http://b/announce"],
            vec!["http://c/announce"]
        ]
    );
    assert_eq!(m.url_list, ["http://seed/file"]);
    assert_eq!(m.nodes, ["dht.example:6881".parse().unwrap()]);
    assert_eq!(m.comment.as_deref(), Some("hello"));
    assert_eq!(
        m.extra.get(&b"x-custom"[..]).map(Vec::as_slice),
        Some(&b"li1ee"[..])
    );
    let again = Metainfo::from_bytes(&m.to_bytes()).unwrap();
    assert_eq!(again.info_hash, m.info_hash);
    assert_eq!(again.extra, m.extra);
    assert_eq!(again.trackers, m.trackers);
    assert_eq!(again.nodes, m.nodes);
}

#[test]
fn padding_files_count_in_the_layout() {
    let mut pad = file(&[b".pad", b"16374"], 16374);
    pad.insert("attr", "p");
    let m = parse(info(
        Some(vec![file(&[b"a"], 10), pad, file(&[b"b"], 100)]),
        16484,
        16384,
    ))
    .unwrap();
    assert!(m.info.files[1].attr.padding);
    assert_eq!(m.info.files[2].offset, 16384);
    assert_eq!(m.info.piece_count(), 2);
}

#[test]
fn builder_round_trip() {
    let builder = TorrentBuilder {
        name: b"folder".to_vec(),
        files: Some(vec![
            (vec![b"a".to_vec(), b"b".to_vec()], 5),
            (vec![b"c".to_vec()], 0),
        ]),
        piece_length: 16384,
        pieces: vec![7u8; 20],
        private: true,
        trackers: vec![vec!["http://t/announce".into()], vec!["udp://u:1".into()]],
        comment: Some("c".into()),
        created_by: Some("shoal".into()),
        creation_date: Some(5),
        nodes: vec!["[::1]:6881".parse().unwrap()],
        ..Default::default()
    };
    let m = Metainfo::from_bytes(&builder.to_bytes()).unwrap();
    assert_eq!(m.info_hash, InfoHash::of_info(&builder.info_bytes()));
    assert_eq!(m.nodes, builder.nodes);
    assert_eq!(paths(&m), ["folder/a/b", "folder/c"]);
    assert_eq!(m.trackers, builder.trackers);
    assert!(m.info.private);
    assert!(m.info.piece_matches(0, &PieceDigest::Sha1([7u8; 20])));
    assert!(!m.info.piece_matches(0, &PieceDigest::Sha1([8u8; 20])));
    assert!(!m.info.piece_matches(1, &PieceDigest::Sha1([7u8; 20])));
    assert_eq!(
        (m.created_by.as_deref(), m.creation_date),
        (Some("shoal"), Some(5))
    );
    assert_eq!(
        m.magnet().to_string(),
        format!(
            "magnet:?xt=urn:btih:{}&dn=folder&tr=http%3A%2F%2Ft%2Fannounce&tr=udp%3A%2F%2Fu%3A1",
            m.info_hash
        )
    );
}
