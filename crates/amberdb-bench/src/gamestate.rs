//! Deterministic, realistic game-state documents of about 1 KiB.
//!
//! Document `i` of revision `r` under seed `s` is always the same JSON value, whichever engine
//! or process asks for it, so every engine stores exactly the same bytes and a child process
//! can regenerate what its parent means without shipping the data over a pipe.

use serde_json::{json, Value};

/// The collection every workload writes to.
pub const COLLECTION: &str = "players";

/// The key of document `i` of the shared data set: fixed width, so that the keys of a prefix
/// `p{:05}` are exactly 100 consecutive documents.
pub fn key(i: u64) -> String {
    format!("p{i:07}")
}

/// A small, fast, well-mixed PRNG (SplitMix64): one independent stream per document.
#[derive(Debug, Clone)]
pub struct Mix(u64);

impl Mix {
    /// A stream for (seed, document, revision).
    pub fn new(seed: u64, index: u64, revision: u64) -> Mix {
        let mut m =
            Mix(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ revision.rotate_left(32));
        m.next_u64();
        m
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let i = self.below(items.len() as u64) as usize;
        items.get(i).copied().unwrap_or("")
    }

    fn coord(&mut self) -> f64 {
        // Quarter units keep floats exact in JSON, so every engine stores identical text.
        (self.below(40_000) as f64 - 20_000.0) / 4.0
    }
}

const ZONES: &[&str] = &[
    "ashen_valley",
    "frostmere",
    "sunken_keep",
    "iron_docks",
    "verdant_reach",
    "the_hollow",
];
const CLASSES: &[&str] = &["warrior", "ranger", "mage", "cleric", "rogue", "bard"];
const ITEMS: &[&str] = &[
    "iron_sword",
    "oak_shield",
    "health_potion",
    "mana_potion",
    "leather_boots",
    "silk_cloak",
    "fire_scroll",
    "lockpick",
    "rope",
    "lantern",
    "dragon_scale",
    "elven_bow",
];
const NAME_A: &[&str] = &[
    "Ari", "Bel", "Cor", "Dru", "Eld", "Fen", "Gar", "Hal", "Isk", "Jor",
];
const NAME_B: &[&str] = &[
    "wyn", "dor", "ith", "ana", "orn", "el", "mir", "uk", "essa", "an",
];

/// Game-state document `index` at `revision` (0 for the first write). About 1 KiB of
/// canonical JSON: profile, position, stats, an inventory, quests, settings.
pub fn document(seed: u64, index: u64, revision: u64) -> Value {
    let mut r = Mix::new(seed, index, revision);
    let name = format!("{}{}{}", r.pick(NAME_A), r.pick(NAME_B), r.below(1000));
    let inventory: Vec<Value> = (0..8)
        .map(|slot| {
            json!({
                "slot": slot,
                "item": r.pick(ITEMS),
                "qty": 1 + r.below(20),
                "durability": r.below(101),
            })
        })
        .collect();
    let quests: Vec<Value> = (0..4)
        .map(|_| {
            json!({
                "id": format!("q_{:03}", r.below(500)),
                "stage": r.below(8),
                "done": r.below(3) == 0,
            })
        })
        .collect();
    json!({
        "player_id": key(index),
        "name": name,
        "class": r.pick(CLASSES),
        "level": 1 + r.below(99),
        "xp": r.below(5_000_000),
        "gold": r.below(1_000_000),
        "hp": { "current": r.below(500), "max": 500 },
        "mana": { "current": r.below(300), "max": 300 },
        "position": { "zone": r.pick(ZONES), "x": r.coord(), "y": r.coord(), "z": r.coord() },
        "stats": {
            "strength": r.below(100), "dexterity": r.below(100), "intelligence": r.below(100),
            "vitality": r.below(100), "luck": r.below(100),
        },
        "inventory": inventory,
        "quests": quests,
        "guild": if r.below(2) == 0 { Value::Null } else { json!(format!("guild_{}", r.below(200))) },
        "settings": { "music_volume": r.below(11), "language": "en", "colorblind": false },
        "revision": revision,
        "last_seen_us": 1_700_000_000_000_000u64 + r.below(10_000_000_000),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_deterministic_and_about_one_kib() {
        assert_eq!(document(7, 3, 0), document(7, 3, 0));
        assert_ne!(document(7, 3, 0), document(7, 4, 0));
        assert_ne!(document(7, 3, 0), document(7, 3, 1));
        let total: usize = (0..200)
            .map(|i| {
                serde_json::to_vec(&document(1, i, 0))
                    .map(|v| v.len())
                    .unwrap_or(0)
            })
            .sum();
        let mean = total / 200;
        assert!(
            (900..=1200).contains(&mean),
            "mean document size {mean} bytes"
        );
    }
}
