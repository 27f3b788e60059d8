//! Pieces a peer suggested (BEP 6 `suggest`), which we fetch from it before rarest-first
//! while we still need them, as libtorrent does. A seed suggests what it wants spread
//! (see [`SuperSeed`](crate::SuperSeed)) or what it has in its cache. Our initial seeds
//! suggest the pieces they have sent least, never the pieces they last read (as libtorrent
//! can, to save disk seeks), which would make peers fetch the same pieces.

use shoal_core::Bitfield;

/// Suggestions remembered per peer (libtorrent keeps 10): the oldest is forgotten first,
/// so a peer cannot grow the list.
pub const MAX_SUGGESTED: usize = 16;

/// One peer's suggestions, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Suggestions(Vec<u32>);

impl Suggestions {
    /// Remembers `piece` unless we `have` it or it is already remembered.
    pub fn add(&mut self, piece: u32, have: &Bitfield) {
        if have.get(piece as usize) || self.0.contains(&piece) {
            return;
        }
        if self.0.len() == MAX_SUGGESTED {
            self.0.remove(0);
        }
        self.0.push(piece);
    }

    /// The suggested pieces we still lack (others are forgotten), oldest first, for
    /// [`PiecePicker::pick_from`](crate::PiecePicker::pick_from).
    pub fn needed(&mut self, have: &Bitfield) -> &[u32] {
        self.0.retain(|&p| !have.get(p as usize));
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_deduplicated_and_only_what_we_lack() {
        let mut have = Bitfield::new(64);
        have.set(3);
        let mut s = Suggestions::default();
        for piece in [3, 5, 5, 7] {
            s.add(piece, &have);
        }
        assert_eq!(s.needed(&have), [5, 7]);
        have.set(5);
        assert_eq!(s.needed(&have), [7]);
        for piece in 10..40 {
            s.add(piece, &have);
        }
        let kept = s.needed(&have);
        assert_eq!(kept.len(), MAX_SUGGESTED);
        assert_eq!(kept[0], 24, "the oldest are forgotten first");
    }
}
