//! The local full-text index: what searches found in the DHT (and what we index
//! ourselves), kept on disk so that the next search answers at once, offline too, and
//! forgives a typo.
//!
//! One document per (indexer, torrent). Its words are split as the tree splits them
//! ([`keywords`]) and handed to `tantivy` pre-tokenized: the name's words (the tree keeps
//! the first [`MAX_NAME`] bytes of a name, so a last word it may have cut is left out),
//! and the tree's keywords the torrent was found under (file-path words among them),
//! which also say what the tree has confirmed ([`LocalHit::confirmed_under`]). A word of
//! four or more letters (no digits) also matches one edit away. Ranking is BM25 over the
//! words, twice for an exact word; a near word or a prefix adds a constant 1.
//!
//! The index is a cache, so it is bounded: a document not seen in a search for
//! [`MAX_AGE`] goes, and beyond [`MAX_DOCS`] documents the least recently seen go first.

use std::path::{Path, PathBuf};
use std::time::Duration;

use shoal_core::hex::{decode_array, encode as hex};
use shoal_core::InfoHash;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, FAST, STORED, STRING,
};
use tantivy::tokenizer::{PreTokenizedString, Token};
use tantivy::{doc, Index, IndexReader, ReloadPolicy, TantivyDocument};

use std::collections::BTreeMap;

use crate::keyword::{keywords, Term};
use crate::node::MAX_NAME;
use crate::similar::MARK;
use crate::Entry;

/// Documents kept at most; beyond it the least recently seen are dropped (a tenth more
/// than the excess, so that pruning does not run on every search).
pub const MAX_DOCS: usize = 200_000;
/// A document not seen in any search for this long is dropped: its torrent has likely
/// left the indexer's index.
pub const MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Words this long or longer also match one edit away (shorter ones would match too
/// much); words with digits never do, as `24.04` must not find `24.05`, nor `1080p` `1080i`.
const FUZZY_FROM: usize = 4;
/// An exact word weighs this much more than a near one.
const EXACT_BOOST: f32 = 2.0;
/// A name this close to [`MAX_NAME`] may have been cut inside its last word (a character
/// is at most four bytes).
const MAX_CHAR_BYTES: usize = 4;
/// Bytes of an error's text kept.
const MAX_ERROR: usize = 300;
/// The writer's memory budget (tantivy's floor is 15 MB).
const WRITER_HEAP: usize = 16_000_000;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("search cache {0}: {1}")]
    Open(String, String),
    #[error("search cache is busy (another shoal is writing it)")]
    Busy,
    #[error("search cache: {0}")]
    Index(#[from] tantivy::TantivyError),
}

/// A torrent as an indexer's tree lists it, to be kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub info_hash: InfoHash,
    /// As the tree has it (cut to [`MAX_NAME`] bytes).
    pub name: String,
    pub size: u64,
    pub indexer: [u8; 32],
    /// The tree's keywords it was found under: what the tree confirmed, beyond the
    /// name's own words (file-path words, too).
    pub words: Vec<String>,
}

impl Listed {
    /// What a tree `entry` of `indexer` says.
    pub fn from_entry(entry: &Entry, indexer: [u8; 32]) -> Listed {
        Listed {
            info_hash: entry.info_hash,
            name: entry.name.clone(),
            size: entry.size,
            indexer,
            words: tree_word(&entry.keyword).into_iter().collect(),
        }
    }

    /// Whether the indexer's tree listed this torrent under every term (a prefix: under
    /// some word starting with it). Only then does a complete answer of that tree that
    /// leaves it out mean the indexer dropped it.
    pub fn confirmed_under(&self, terms: &[Term]) -> bool {
        terms.iter().all(|term| match term {
            Term::Word(w) => self.words.contains(w),
            Term::Prefix(p) => self.words.iter().any(|w| w.starts_with(p.as_str())),
        })
    }
}

/// `keyword` if it is a word (not a similarity key, which a search never asks for).
fn tree_word(keyword: &str) -> Option<String> {
    (!keyword.is_empty() && !keyword.starts_with(MARK)).then(|| keyword.to_owned())
}

/// A torrent the local index holds, as a search found it: what was listed (with every
/// tree keyword it was found under so far), and how well it matches.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalHit {
    pub listed: Listed,
    pub score: f32,
}

struct Fields {
    id: Field,
    info_hash: Field,
    indexer: Field,
    name: Field,
    words: Field,
    tree_words: Field,
    size: Field,
    seen: Field,
}

/// The on-disk index. Readers may be many; one process at a time may add.
pub struct LocalIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
}

impl LocalIndex {
    /// Opens the index in `dir`, creating it (and the folder) if there is none.
    pub fn open(dir: &Path) -> Result<LocalIndex, LocalError> {
        // tantivy quotes a damaged file's content in its error: keep the message short.
        let open_err = |e: &dyn std::fmt::Display| {
            let text = e.to_string();
            let cut = crate::keyword::truncate(&text, MAX_ERROR);
            let text = if cut.len() < text.len() {
                cut + "…"
            } else {
                cut
            };
            LocalError::Open(dir.display().to_string(), text)
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(&e))?;
        let (schema, fields) = schema();
        let directory = tantivy::directory::MmapDirectory::open(dir).map_err(|e| open_err(&e))?;
        let index = Index::open_or_create(directory, schema).map_err(|e| open_err(&e))?;
        // Every file's checksum, at once: tantivy trusts what it reads, and some damage
        // (a fast field's) would make it panic in the middle of a search.
        let damaged = index.validate_checksum().map_err(|e| open_err(&e))?;
        if let Some(file) = damaged.iter().min() {
            let what = format!("damaged: {} fails its checksum", file.display());
            return Err(open_err(&what));
        }
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e: tantivy::TantivyError| open_err(&e))?;
        Ok(LocalIndex {
            index,
            reader,
            fields,
        })
    }

    /// [`open`](Self::open), but an index that cannot be opened (damaged, or of another
    /// version of this schema) is moved aside to `<dir>.broken-<now>` and a new one made,
    /// as it is only a cache; returns where the old one went. A folder that is not an
    /// index (no `meta.json`) is never moved.
    pub fn open_or_reset(
        dir: &Path,
        now: u64,
    ) -> Result<(LocalIndex, Option<PathBuf>), LocalError> {
        let error = match LocalIndex::open(dir) {
            Ok(index) => return Ok((index, None)),
            Err(e) => e,
        };
        let Some(name) = dir.file_name().filter(|_| dir.join("meta.json").is_file()) else {
            return Err(error);
        };
        let mut aside = name.to_owned();
        aside.push(format!(".broken-{now}"));
        let aside = dir.with_file_name(aside);
        std::fs::rename(dir, &aside)
            .map_err(|e| LocalError::Open(dir.display().to_string(), e.to_string()))?;
        Ok((LocalIndex::open(dir)?, Some(aside)))
    }

    /// Documents held.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds (or refreshes) what indexers' trees listed, seen at `now` (seconds since the
    /// epoch), keeping the tree words known before; then drops what is too old or too
    /// much.
    pub fn add(
        &mut self,
        found: impl IntoIterator<Item = Listed>,
        now: u64,
    ) -> Result<(), LocalError> {
        let mut writer = self.writer()?;
        self.put(&mut writer, found, now)?;
        self.finish(writer, now)
    }

    /// Replaces everything of `indexer` with `found` (our own index, as `shoal index`
    /// publishes it: torrents it no longer lists go).
    pub fn replace_indexer(
        &mut self,
        indexer: [u8; 32],
        found: impl IntoIterator<Item = Listed>,
        now: u64,
    ) -> Result<(), LocalError> {
        let mut writer = self.writer()?;
        writer.delete_term(tantivy::Term::from_field_text(
            self.fields.indexer,
            &hex(&indexer),
        ));
        self.put(&mut writer, found, now)?;
        self.finish(writer, now)
    }

    /// Writes each torrent once (the same torrent of the same indexer merged).
    fn put(
        &self,
        writer: &mut tantivy::IndexWriter,
        found: impl IntoIterator<Item = Listed>,
        now: u64,
    ) -> Result<(), LocalError> {
        let mut merged: BTreeMap<String, Listed> = BTreeMap::new();
        for listed in found {
            let id = id_of(&listed.indexer, &listed.info_hash);
            match merged.get_mut(&id) {
                Some(known) => known.words.extend(listed.words),
                None => {
                    merged.insert(id, listed);
                }
            }
        }
        let searcher = self.reader.searcher();
        let f = &self.fields;
        for (id, mut listed) in merged {
            let id_term = tantivy::Term::from_field_text(f.id, &id);
            // What the tree confirmed before stays confirmed.
            let before = searcher.search(
                &TermQuery::new(id_term.clone(), IndexRecordOption::Basic),
                &TopDocs::with_limit(1).order_by_score(),
            )?;
            if let Some(&(_, address)) = before.first() {
                let doc: TantivyDocument = searcher.doc(address)?;
                if let Some(words) = doc.get_first(f.tree_words).and_then(|v| v.as_str()) {
                    listed.words.extend(words.split(' ').filter_map(tree_word));
                }
            }
            listed.words.sort_unstable();
            listed.words.dedup();
            writer.delete_term(id_term);
            writer.add_document(doc!(
                f.id => id,
                f.info_hash => listed.info_hash.to_hex(),
                f.indexer => hex(&listed.indexer),
                f.name => listed.name.clone(),
                f.words => pre_tokenized(&listed.name, &listed.words),
                f.tree_words => listed.words.join(" "),
                f.size => listed.size,
                f.seen => now,
            ))?;
        }
        Ok(())
    }

    /// Commits, drops what is too old or too much, and lets the writer's merges end
    /// (a writer dropped mid-merge throws the merge away).
    fn finish(&mut self, mut writer: tantivy::IndexWriter, now: u64) -> Result<(), LocalError> {
        writer.commit()?;
        self.reader.reload()?;
        let stale = self.stale(now)?;
        if !stale.is_empty() {
            for id in stale {
                writer.delete_term(tantivy::Term::from_field_text(self.fields.id, &id));
            }
            writer.commit()?;
            self.reader.reload()?;
        }
        writer.wait_merging_threads()?;
        self.reader.reload()?;
        Ok(())
    }

    /// Drops what `indexer`'s index no longer lists.
    pub fn forget(
        &mut self,
        gone: impl IntoIterator<Item = ([u8; 32], InfoHash)>,
    ) -> Result<(), LocalError> {
        let mut gone = gone.into_iter().peekable();
        if gone.peek().is_none() {
            return Ok(());
        }
        let mut writer = self.writer()?;
        for (indexer, info_hash) in gone {
            let id = id_of(&indexer, &info_hash);
            writer.delete_term(tantivy::Term::from_field_text(self.fields.id, &id));
        }
        writer.commit()?;
        self.reader.reload()?;
        writer.wait_merging_threads()?;
        self.reader.reload()?;
        Ok(())
    }

    fn writer(&self) -> Result<tantivy::IndexWriter, LocalError> {
        self.index
            .writer_with_num_threads::<TantivyDocument>(1, WRITER_HEAP)
            .map_err(|e| match e {
                tantivy::TantivyError::LockFailure(
                    tantivy::directory::error::LockError::LockBusy,
                    _,
                ) => LocalError::Busy,
                e => LocalError::Index(e),
            })
    }

    /// The ids of documents older than [`MAX_AGE`], and of the least recently seen beyond
    /// [`MAX_DOCS`].
    fn stale(&self, now: u64) -> Result<Vec<String>, LocalError> {
        let searcher = self.reader.searcher();
        let oldest = now.saturating_sub(MAX_AGE.as_secs());
        let over = (searcher.num_docs() as usize).saturating_sub(MAX_DOCS);
        let mut seen: Vec<(u64, tantivy::DocAddress)> = Vec::new();
        for (ord, segment) in searcher.segment_readers().iter().enumerate() {
            let column = segment.fast_fields().u64("seen")?;
            let alive = segment.alive_bitset();
            for doc in 0..segment.max_doc() {
                if alive.is_some_and(|a| !a.is_alive(doc)) {
                    continue;
                }
                let at = column.first(doc).unwrap_or(0);
                if at < oldest || over > 0 {
                    seen.push((at, tantivy::DocAddress::new(ord as u32, doc)));
                }
            }
        }
        seen.sort_unstable_by_key(|&(at, _)| at);
        let drop = if over > 0 { over + MAX_DOCS / 10 } else { 0 };
        let mut ids = Vec::new();
        for (i, &(at, address)) in seen.iter().enumerate() {
            if at >= oldest && i >= drop {
                break;
            }
            let doc: TantivyDocument = searcher.doc(address)?;
            if let Some(id) = doc.get_first(self.fields.id).and_then(|v| v.as_str()) {
                ids.push(id.to_owned());
            }
        }
        Ok(ids)
    }

    /// The best `limit` documents with every term (a word, exact or near; a prefix), from
    /// the `indexers` given (any if none), best first.
    pub fn search(
        &self,
        terms: &[Term],
        indexers: &[[u8; 32]],
        limit: usize,
    ) -> Result<Vec<LocalHit>, LocalError> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .map(|term| (Occur::Must, self.term_query(term)))
            .collect();
        if clauses.is_empty() {
            return Ok(Vec::new());
        }
        self.restrict(&mut clauses, indexers);
        self.run(BooleanQuery::new(clauses), limit)
    }

    /// The best `limit` documents sharing any keyword of `name` (candidates for `search
    /// --like`, to be ranked by similarity).
    pub fn related(
        &self,
        name: &str,
        indexers: &[[u8; 32]],
        limit: usize,
    ) -> Result<Vec<LocalHit>, LocalError> {
        let words: Vec<(Occur, Box<dyn Query>)> = keywords(name)
            .into_iter()
            .map(|w| (Occur::Should, self.exact(&w)))
            .collect();
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let mut clauses = vec![(Occur::Must, Box::new(BooleanQuery::new(words)) as Box<_>)];
        self.restrict(&mut clauses, indexers);
        self.run(BooleanQuery::new(clauses), limit)
    }

    fn exact(&self, word: &str) -> Box<dyn Query> {
        let term = tantivy::Term::from_field_text(self.fields.words, word);
        Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs))
    }

    fn term_query(&self, term: &Term) -> Box<dyn Query> {
        match term {
            Term::Word(w)
                if w.chars().count() >= FUZZY_FROM && !w.contains(|c: char| c.is_numeric()) =>
            {
                let near = tantivy::Term::from_field_text(self.fields.words, w);
                Box::new(BooleanQuery::new(vec![
                    (
                        Occur::Should,
                        Box::new(BoostQuery::new(self.exact(w), EXACT_BOOST)),
                    ),
                    (Occur::Should, Box::new(FuzzyTermQuery::new(near, 1, true))),
                ]))
            }
            Term::Word(w) => self.exact(w),
            Term::Prefix(p) => {
                let stem = tantivy::Term::from_field_text(self.fields.words, p);
                Box::new(FuzzyTermQuery::new_prefix(stem, 0, false))
            }
        }
    }

    fn restrict(&self, clauses: &mut Vec<(Occur, Box<dyn Query>)>, indexers: &[[u8; 32]]) {
        if indexers.is_empty() {
            return;
        }
        let any: Vec<(Occur, Box<dyn Query>)> = indexers
            .iter()
            .map(|k| {
                let term = tantivy::Term::from_field_text(self.fields.indexer, &hex(k));
                let q: Box<dyn Query> = Box::new(TermQuery::new(term, IndexRecordOption::Basic));
                (Occur::Should, q)
            })
            .collect();
        clauses.push((Occur::Must, Box::new(BooleanQuery::new(any))));
    }

    fn run(&self, query: BooleanQuery, limit: usize) -> Result<Vec<LocalHit>, LocalError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let searcher = self.reader.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(limit).order_by_score())?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            if let Some(hit) = self.hit(&doc, score) {
                hits.push(hit);
            }
        }
        Ok(hits)
    }

    /// A stored document as a hit; `None` if its fields are not what we write (then it
    /// is skipped, not trusted).
    fn hit(&self, doc: &TantivyDocument, score: f32) -> Option<LocalHit> {
        let f = &self.fields;
        let text = |field| doc.get_first(field).and_then(|v| v.as_str());
        let info_hash: InfoHash = text(f.info_hash)?.parse().ok()?;
        let indexer = decode_array::<32>(text(f.indexer)?)?;
        let listed = Listed {
            info_hash,
            name: text(f.name)?.to_owned(),
            size: doc.get_first(f.size).and_then(|v| v.as_u64())?,
            indexer,
            words: text(f.tree_words)
                .unwrap_or("")
                .split(' ')
                .filter_map(tree_word)
                .collect(),
        };
        Some(LocalHit { listed, score })
    }
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let words = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default().set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        id: b.add_text_field("id", STRING | STORED),
        info_hash: b.add_text_field("info_hash", STORED),
        indexer: b.add_text_field("indexer", STRING | STORED),
        name: b.add_text_field("name", STORED),
        words: b.add_text_field("words", words),
        tree_words: b.add_text_field("tree_words", STORED),
        size: b.add_u64_field("size", STORED),
        seen: b.add_u64_field("seen", STORED | FAST),
    };
    (b.build(), fields)
}

/// The words a torrent is found by here: its tree words, and its name split as the tree
/// splits it, less a last word the tree's cut of the name may have broken (the tree
/// indexes the whole name; `name` is its first [`MAX_NAME`] bytes).
fn pre_tokenized(name: &str, tree_words: &[String]) -> PreTokenizedString {
    let mut words = keywords(name);
    if name.len() + MAX_CHAR_BYTES > MAX_NAME {
        words.pop();
    }
    for w in tree_words {
        if !words.contains(w) {
            words.push(w.clone());
        }
    }
    let tokens = words
        .into_iter()
        .enumerate()
        .map(|(position, text)| Token {
            offset_from: 0,
            offset_to: 0,
            position,
            text,
            position_length: 1,
        })
        .collect();
    PreTokenizedString {
        text: name.to_owned(),
        tokens,
    }
}

fn id_of(indexer: &[u8; 32], info_hash: &InfoHash) -> String {
    format!("{}{}", hex(indexer), info_hash.to_hex())
}

#[cfg(test)]
mod tests;
