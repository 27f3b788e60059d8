use super::*;
use crate::query_terms;

const ALICE: [u8; 32] = [0xa1; 32];
const BOB: [u8; 32] = [0xb0; 32];
const DAY: u64 = 24 * 3600;
const NOW: u64 = 1_800_000_000;

/// Torrent `n` of `indexer`, found by its name's words alone.
fn listed(n: u8, name: &str, indexer: [u8; 32]) -> Listed {
    Listed {
        info_hash: InfoHash([n; 20]),
        name: name.to_owned(),
        size: u64::from(n) * 1000,
        indexer,
        words: Vec::new(),
    }
}

fn terms(query: &str) -> Vec<Term> {
    query.split(' ').flat_map(query_terms).collect()
}

fn names(hits: &[LocalHit]) -> Vec<&str> {
    hits.iter().map(|h| h.listed.name.as_str()).collect()
}

fn sample(dir: &Path) -> LocalIndex {
    let mut index = LocalIndex::open(dir).unwrap();
    index
        .add(
            [
                listed(1, "Ubuntu 24.04 Desktop amd64", ALICE),
                listed(2, "ubuntu-24.04-live-server-amd64.iso", ALICE),
                listed(3, "Debian 12 netinst", ALICE),
                listed(4, "Big Buck Bunny 1080p", BOB),
                listed(5, "Café del Mar", BOB),
            ],
            NOW,
        )
        .unwrap();
    index
}

#[test]
fn every_word_must_match_as_the_tree_splits_words() {
    let dir = tempfile::tempdir().unwrap();
    let index = sample(dir.path());
    let hits = index.search(&terms("ubuntu server"), &[], 10).unwrap();
    assert_eq!(names(&hits), ["ubuntu-24.04-live-server-amd64.iso"]);
    let hits = index.search(&terms("UBUNTU-24.04"), &[], 10).unwrap();
    assert_eq!(hits.len(), 2);
    assert!(index
        .search(&terms("ubuntu bunny"), &[], 10)
        .unwrap()
        .is_empty());
    // A decomposed é (as macOS writes it) finds the composed one.
    let hits = index.search(&terms("cafe\u{301}"), &[], 10).unwrap();
    assert_eq!(names(&hits), ["Café del Mar"]);
    let hit = &hits[0].listed;
    assert_eq!(
        (hit.info_hash, hit.size, hit.indexer),
        (InfoHash([5; 20]), 5000, BOB)
    );
}

#[test]
fn prefixes_and_near_words() {
    let dir = tempfile::tempdir().unwrap();
    let index = sample(dir.path());
    let hits = index.search(&terms("bu*"), &[], 10).unwrap();
    assert_eq!(names(&hits), ["Big Buck Bunny 1080p"]);
    // One letter wrong, or two swapped, in a word of four or more: still found.
    let hits = index.search(&terms("ubunto"), &[], 10).unwrap();
    assert_eq!(hits.len(), 2);
    let hits = index.search(&terms("debain"), &[], 10).unwrap();
    assert_eq!(names(&hits), ["Debian 12 netinst"]);
    // Two edits, or a short word one edit away, are not.
    assert!(index.search(&terms("ubonto"), &[], 10).unwrap().is_empty());
    assert!(index.search(&terms("dal"), &[], 10).unwrap().is_empty());
    assert_eq!(index.search(&terms("del"), &[], 10).unwrap().len(), 1);
    // Nor a word with digits: versions and resolutions must match exactly.
    assert!(index.search(&terms("1081p"), &[], 10).unwrap().is_empty());
}

#[test]
fn exact_words_rank_above_near_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = LocalIndex::open(dir.path()).unwrap();
    index
        .add(
            [
                listed(1, "linux mint", ALICE),
                listed(2, "linux mind", ALICE),
            ],
            NOW,
        )
        .unwrap();
    let hits = index.search(&terms("mind"), &[], 10).unwrap();
    assert_eq!(names(&hits), ["linux mind", "linux mint"]);
    assert!(hits[0].score > hits[1].score);
}

#[test]
fn results_come_from_the_indexers_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = sample(dir.path());
    // Bob lists one of Alice's torrents too: one document per indexer.
    index
        .add([listed(1, "Ubuntu 24.04 Desktop amd64", BOB)], NOW)
        .unwrap();
    let q = terms("desktop");
    assert_eq!(index.search(&q, &[], 10).unwrap().len(), 2);
    let from_bob = index.search(&q, &[BOB], 10).unwrap();
    assert_eq!(from_bob.len(), 1);
    assert_eq!(from_bob[0].listed.indexer, BOB);
    assert_eq!(index.search(&q, &[ALICE, BOB], 10).unwrap().len(), 2);
    assert!(index.search(&q, &[[9; 32]], 10).unwrap().is_empty());
}

#[test]
fn adding_again_refreshes_instead_of_duplicating_and_it_persists() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut index = sample(dir.path());
        index
            .add([listed(3, "Debian 12 netinst", ALICE)], NOW + 10)
            .unwrap();
        assert_eq!(index.len(), 5);
    }
    let index = LocalIndex::open(dir.path()).unwrap();
    assert_eq!(index.len(), 5);
    assert_eq!(index.search(&terms("netinst"), &[], 10).unwrap().len(), 1);
}

#[test]
fn related_names_share_a_word() {
    let dir = tempfile::tempdir().unwrap();
    let index = sample(dir.path());
    let hits = index.related("Ubuntu 22.04 Desktop", &[], 10).unwrap();
    assert_eq!(
        hits[0].listed.name, "Ubuntu 24.04 Desktop amd64",
        "most words in common first"
    );
    assert_eq!(hits.len(), 2);
    assert!(index.related("--", &[], 10).unwrap().is_empty());
}

#[test]
fn old_entries_expire_and_the_size_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = sample(dir.path());
    // A month later, only what a search saw again stays.
    let later = NOW + MAX_AGE.as_secs() + DAY;
    index
        .add([listed(4, "Big Buck Bunny 1080p", BOB)], later)
        .unwrap();
    assert_eq!(index.len(), 1);
    assert!(index.search(&terms("ubuntu"), &[], 10).unwrap().is_empty());
}

#[test]
fn beyond_the_bound_the_least_recently_seen_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = LocalIndex::open(dir.path()).unwrap();
    let batch = |from: u32, n: u32| -> Vec<Listed> {
        (from..from + n)
            .map(|i| {
                let mut hash = [0u8; 20];
                hash[..4].copy_from_slice(&i.to_be_bytes());
                Listed {
                    info_hash: InfoHash(hash),
                    name: format!("file {i}"),
                    size: 1,
                    indexer: ALICE,
                    words: Vec::new(),
                }
            })
            .collect()
    };
    let bound = MAX_DOCS as u32;
    index.add(batch(0, bound), NOW).unwrap();
    assert_eq!(index.len(), MAX_DOCS as u64);
    index.add(batch(bound, 10), NOW + 1).unwrap();
    // The ten over the bound and a tenth more went, all of the older batch.
    assert_eq!(index.len(), (MAX_DOCS - MAX_DOCS / 10) as u64);
    for i in bound..bound + 10 {
        let hits = index.search(&terms(&i.to_string()), &[], 10).unwrap();
        assert_eq!(names(&hits), [format!("file {i}")], "numbers match exactly");
    }
}

#[test]
fn a_second_writer_is_told_busy_and_readers_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let index = sample(dir.path());
    let writer = index
        .index
        .writer_with_num_threads::<TantivyDocument>(1, WRITER_HEAP)
        .unwrap();
    let mut other = LocalIndex::open(dir.path()).unwrap();
    assert!(matches!(
        other.add([listed(9, "nine", ALICE)], NOW),
        Err(LocalError::Busy)
    ));
    assert_eq!(other.search(&terms("debian"), &[], 10).unwrap().len(), 1);
    drop(writer);
    other.add([listed(9, "nine", ALICE)], NOW).unwrap();
}

#[test]
fn a_damaged_index_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    drop(sample(dir.path()));
    // A big damaged file: the error stays short however much of it tantivy quotes.
    let mut junk = b"{ not json ".to_vec();
    junk.resize(100_000, b'x');
    std::fs::write(dir.path().join("meta.json"), junk).unwrap();
    let err = LocalIndex::open(dir.path()).err().expect("refused");
    assert!(err.to_string().contains("search cache"), "{err}");
    assert!(
        err.to_string().len() < 1000,
        "{} bytes",
        err.to_string().len()
    );
    // A file where the folder should be.
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    assert!(LocalIndex::open(&file).is_err());
}

#[test]
fn tree_words_are_found_and_say_what_the_tree_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = LocalIndex::open(dir.path()).unwrap();
    // Found under a file-path word, then (another search) under a name word.
    let mut album = listed(7, "Greatest Hits", ALICE);
    album.words = vec!["flac".to_owned()];
    index.add([album.clone()], NOW).unwrap();
    album.words = vec!["greatest".to_owned()];
    index.add([album], NOW + 1).unwrap();
    let hits = index.search(&terms("flac"), &[], 10).unwrap();
    assert_eq!(names(&hits), ["Greatest Hits"], "a word of its files");
    let hit = &hits[0].listed;
    assert_eq!(hit.words, ["flac", "greatest"], "both kept");
    assert!(hit.confirmed_under(&terms("flac greatest")));
    assert!(hit.confirmed_under(&terms("gre*")));
    assert!(
        !hit.confirmed_under(&terms("hits")),
        "a name word the tree never confirmed"
    );
    assert_eq!(index.len(), 1);
}

#[test]
fn a_word_the_trees_cut_of_the_name_may_have_broken_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = LocalIndex::open(dir.path()).unwrap();
    // 48 bytes: the tree's cut of a longer name ("... collection").
    let name = "the complete works of somebody famous collectio";
    assert_eq!(name.len(), crate::node::MAX_NAME - 1);
    index.add([listed(3, name, ALICE)], NOW).unwrap();
    assert!(index
        .search(&terms("collectio"), &[], 10)
        .unwrap()
        .is_empty());
    assert_eq!(index.search(&terms("famous"), &[], 10).unwrap().len(), 1);
}

#[test]
fn our_own_index_is_replaced_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = sample(dir.path());
    index
        .replace_indexer(ALICE, [listed(9, "Fedora Server 40", ALICE)], NOW)
        .unwrap();
    assert!(index
        .search(&terms("ubuntu"), &[ALICE], 10)
        .unwrap()
        .is_empty());
    assert_eq!(index.search(&terms("fedora"), &[], 10).unwrap().len(), 1);
    assert_eq!(
        index.search(&terms("bunny"), &[BOB], 10).unwrap().len(),
        1,
        "Bob's stay"
    );
}

#[test]
fn a_damaged_index_is_moved_aside_and_started_afresh() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("search");
    drop(sample(&dir));
    std::fs::write(dir.join("meta.json"), b"{ not json").unwrap();
    let (mut index, moved) = LocalIndex::open_or_reset(&dir, NOW).unwrap();
    let moved = moved.expect("moved aside");
    assert_eq!(moved, parent.path().join(format!("search.broken-{NOW}")));
    assert!(moved.join("meta.json").is_file(), "kept, not deleted");
    assert!(index.is_empty());
    index.add([listed(1, "fresh start", ALICE)], NOW).unwrap();
    // A folder that is not an index is never moved.
    let plain = parent.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    std::fs::write(plain.join("notes.txt"), b"mine").unwrap();
    let (_, moved) = LocalIndex::open_or_reset(&plain, NOW).unwrap();
    assert!(moved.is_none());
    assert!(plain.join("notes.txt").is_file());
}

#[test]
fn many_adds_leave_few_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = LocalIndex::open(dir.path()).unwrap();
    for n in 0..40u8 {
        index
            .add(
                [listed(n, &format!("torrent number {n}"), ALICE)],
                NOW + u64::from(n),
            )
            .unwrap();
    }
    assert_eq!(index.len(), 40);
    let segments = index.reader.searcher().segment_readers().len();
    assert!(segments <= 12, "{segments} segments: merges finish");
}

#[test]
fn damaged_segment_files_are_found_at_open_and_never_panic() {
    // Each kind of segment file, damaged at its start and further in.
    for (ext, offset) in [
        ("idx", 0),
        ("term", 0),
        ("store", 0),
        ("pos", 0),
        ("fieldnorm", 0),
        ("fast", 0),
        ("idx", 40),
        ("term", 40),
        ("store", 40),
        ("fast", 40),
    ] {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("search");
        drop(sample(&dir));
        let mut damaged = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) == Some(ext) {
                let mut bytes = std::fs::read(&path).unwrap();
                if bytes.len() > offset + 8 {
                    for b in &mut bytes[offset..offset + 8] {
                        *b ^= 0x5a;
                    }
                    std::fs::write(&path, bytes).unwrap();
                    damaged += 1;
                }
            }
        }
        assert!(damaged > 0, "{ext}");
        let err = LocalIndex::open(&dir).err().expect("damage found");
        assert!(err.to_string().contains("damaged"), "{ext}@{offset}: {err}");
        let (index, moved) = LocalIndex::open_or_reset(&dir, NOW).unwrap();
        assert!(moved.is_some(), "{ext}@{offset}");
        assert!(index.search(&terms("ubuntu"), &[], 10).unwrap().is_empty());
    }
}
