//! [`HashIndex`]: one collection's documents by key, for point reads and transaction
//! preparation. A persistent hash trie (a HAMT with compressed nodes): a node keeps only the
//! slots it uses, in one allocation, behind a 32-bit bitmap, so cloning an index is one
//! reference count and an insert copies one path of small nodes.
//!
//! Why not `imbl::HashMap`: its nodes are full width (32 slots of 32 bytes whatever their
//! fill), which cost ~450 bytes per document at a million documents, and it can only be
//! built one insert at a time. This index costs ~30 bytes per document and is built in bulk
//! from a checkpoint's documents ([`HashIndex::build`]: sort by hash, then one pass that
//! lays out every node once), which is what a reopen does (`docs/BENCHMARKS.md`, "Reopen").
//!
//! Keys are hashed with the standard library's randomly keyed SipHash (one key per process),
//! so a client cannot choose keys that collide. Full 64-bit collisions still work: below the
//! last level a node is a plain list compared by key.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Arc, LazyLock};

use crate::document::Document;

/// Depth at which every bit of the hash is used: nodes there are collision lists.
const COLLISION_DEPTH: u32 = 13;

static HASHER: LazyLock<RandomState> = LazyLock::new(RandomState::new);

fn hash(key: &str) -> u64 {
    HASHER.hash_one(key)
}

/// The 5 bits of `h` that choose the slot at `depth`, highest bits first, so that documents
/// sorted by hash are grouped by slot at every depth (what [`HashIndex::build`] relies on).
/// Depth 12 has the last 4 bits (and a zero).
fn chunk(h: u64, depth: u32) -> u32 {
    debug_assert!(depth < COLLISION_DEPTH);
    ((h << (5 * depth)) >> 59) as u32
}

/// A document with the hash of its key, taken while the document is fresh in the cache (as
/// a checkpoint decodes it) rather than when the index is built from a million of them.
#[derive(Debug, Clone)]
pub(crate) struct HashedDoc(u64, Arc<Document>);

impl HashedDoc {
    pub(crate) fn new(doc: Document) -> HashedDoc {
        HashedDoc(hash(&doc.key), Arc::new(doc))
    }

    pub(crate) fn doc(&self) -> &Arc<Document> {
        &self.1
    }

    pub(crate) fn key(&self) -> &str {
        &self.1.key
    }
}

/// An inner node: bit `c` of `bitmap` says slot chunk `c` is used, and `slots` holds the
/// used ones in chunk order. At [`COLLISION_DEPTH`] the bitmap is unused and `slots` are
/// documents whose keys all have the same hash.
#[derive(Clone)]
struct Node {
    bitmap: u32,
    slots: Arc<[Slot]>,
}

#[derive(Clone)]
enum Slot {
    Doc(Arc<Document>),
    Node(Node),
}

impl Default for Node {
    fn default() -> Self {
        Node {
            bitmap: 0,
            slots: Arc::from(Vec::new()),
        }
    }
}

/// A collection's documents by key. See the module documentation.
#[derive(Clone, Default)]
pub(crate) struct HashIndex {
    root: Node,
    len: usize,
}

impl HashIndex {
    /// Builds an index of `docs`, whose keys must be unique, in one pass: no node is built
    /// twice, none is copied.
    pub(crate) fn build(mut docs: Vec<HashedDoc>) -> HashIndex {
        docs.sort_unstable_by_key(|d| d.0);
        let len = docs.len();
        let (hashes, docs): (Vec<u64>, Vec<Arc<Document>>) =
            docs.into_iter().map(|d| (d.0, d.1)).unzip();
        let root = build_node(&hashes, &mut docs.into_iter(), 0);
        HashIndex { root, len }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Arc<Document>> {
        self.get_hashed(hash(key), key)
    }

    fn get_hashed(&self, h: u64, key: &str) -> Option<&Arc<Document>> {
        let mut node = &self.root;
        for depth in 0..COLLISION_DEPTH {
            let bit = 1u32 << chunk(h, depth);
            if node.bitmap & bit == 0 {
                return None;
            }
            match node
                .slots
                .get((node.bitmap & (bit - 1)).count_ones() as usize)?
            {
                Slot::Doc(d) => return (&*d.key == key).then_some(d),
                Slot::Node(n) => node = n,
            }
        }
        node.slots.iter().find_map(|s| match s {
            Slot::Doc(d) if &*d.key == key => Some(d),
            _ => None,
        })
    }

    /// Adds `doc` under its key; returns the document it replaces.
    pub(crate) fn insert(&mut self, doc: Arc<Document>) -> Option<Arc<Document>> {
        self.insert_hashed(hash, doc)
    }

    /// [`HashIndex::insert`] under the hash function `hash` (tests use degenerate ones).
    fn insert_hashed(
        &mut self,
        hash: fn(&str) -> u64,
        doc: Arc<Document>,
    ) -> Option<Arc<Document>> {
        let (root, old) = insert_into(&self.root, 0, (hash(&doc.key), hash), doc);
        self.root = root;
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes `key`'s document; returns it.
    pub(crate) fn remove(&mut self, key: &str) -> Option<Arc<Document>> {
        self.remove_hashed(hash(key), key)
    }

    fn remove_hashed(&mut self, h: u64, key: &str) -> Option<Arc<Document>> {
        let (root, old) = remove_from(&self.root, 0, h, key)?;
        self.root = root;
        self.len -= 1;
        Some(old)
    }

    /// Every document, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<Document>> + '_ {
        let mut stack = vec![self.root.slots.iter()];
        std::iter::from_fn(move || loop {
            let top = stack.last_mut()?;
            match top.next() {
                None => {
                    stack.pop();
                }
                Some(Slot::Doc(d)) => return Some(d),
                Some(Slot::Node(n)) => stack.push(n.slots.iter()),
            }
        })
    }

    /// Heap bytes of the index's own nodes (not the documents they point to).
    #[cfg(test)]
    pub(crate) fn node_bytes(&self) -> usize {
        fn walk(n: &Node) -> usize {
            let own = 2 * std::mem::size_of::<usize>() + std::mem::size_of_val(&*n.slots);
            own + n
                .slots
                .iter()
                .map(|s| match s {
                    Slot::Doc(_) => 0,
                    Slot::Node(c) => walk(c),
                })
                .sum::<usize>()
        }
        walk(&self.root)
    }
}

/// The node at `depth` of the documents `docs` yields, whose hashes are `hashes` (sorted, in
/// the same order). Every node is laid out once, and the documents are moved into it, not
/// cloned: a clone touches each (cache-cold) document's reference count.
fn build_node<I: Iterator<Item = Arc<Document>>>(hashes: &[u64], docs: &mut I, depth: u32) -> Node {
    if depth == COLLISION_DEPTH {
        return Node {
            bitmap: 0,
            slots: docs.by_ref().take(hashes.len()).map(Slot::Doc).collect(),
        };
    }
    let mut bitmap = 0;
    let mut slots = Vec::new();
    let mut rest = hashes;
    while let Some(&first) = rest.first() {
        let c = chunk(first, depth);
        let n = rest.partition_point(|&h| chunk(h, depth) == c);
        let (group, tail) = rest.split_at(n);
        let slot = match group {
            [_] => docs.next().map(Slot::Doc),
            _ => Some(Slot::Node(build_node(group, docs, depth + 1))),
        };
        // `docs` yields one document per hash, so there is always a slot.
        if let Some(slot) = slot {
            bitmap |= 1 << c;
            slots.push(slot);
        }
        rest = tail;
    }
    Node {
        bitmap,
        slots: slots.into(),
    }
}

/// `node` with `slots[i]` replaced, inserted or removed, as a new node.
fn with_slot(node: &Node, bitmap: u32, i: usize, edit: Edit) -> Node {
    let mut slots: Vec<Slot> = Vec::with_capacity(node.slots.len() + 1);
    slots.extend_from_slice(node.slots.get(..i).unwrap_or_default());
    let after = match edit {
        Edit::Replace(s) => {
            slots.push(s);
            i + 1
        }
        Edit::Insert(s) => {
            slots.push(s);
            i
        }
        Edit::Remove => i + 1,
    };
    slots.extend_from_slice(node.slots.get(after..).unwrap_or_default());
    Node {
        bitmap,
        slots: slots.into(),
    }
}

enum Edit {
    Replace(Slot),
    Insert(Slot),
    Remove,
}

/// `node` with `doc` (whose key hashes to `h` under `hash`) added, and the document of the
/// same key it replaces.
fn insert_into(
    node: &Node,
    depth: u32,
    (h, hash): (u64, fn(&str) -> u64),
    doc: Arc<Document>,
) -> (Node, Option<Arc<Document>>) {
    if depth == COLLISION_DEPTH {
        let same = node.slots.iter().enumerate().find_map(|(i, s)| match s {
            Slot::Doc(d) if d.key == doc.key => Some((i, d.clone())),
            _ => None,
        });
        return match same {
            Some((i, old)) => (
                with_slot(node, 0, i, Edit::Replace(Slot::Doc(doc))),
                Some(old),
            ),
            None => {
                let end = node.slots.len();
                (with_slot(node, 0, end, Edit::Insert(Slot::Doc(doc))), None)
            }
        };
    }
    let bit = 1u32 << chunk(h, depth);
    let i = (node.bitmap & (bit - 1)).count_ones() as usize;
    let slot = node.slots.get(i).filter(|_| node.bitmap & bit != 0);
    let (edit, old) = match slot {
        None => {
            let n = with_slot(node, node.bitmap | bit, i, Edit::Insert(Slot::Doc(doc)));
            return (n, None);
        }
        Some(Slot::Doc(d)) if d.key == doc.key => (Slot::Doc(doc), Some(d.clone())),
        Some(Slot::Doc(d)) => {
            let pair = build_pair(depth + 1, (hash(&d.key), d.clone()), (h, doc));
            (Slot::Node(pair), None)
        }
        Some(Slot::Node(child)) => {
            let (child, old) = insert_into(child, depth + 1, (h, hash), doc);
            (Slot::Node(child), old)
        }
    };
    (with_slot(node, node.bitmap, i, Edit::Replace(edit)), old)
}

/// The node at `depth` holding two documents of different keys.
fn build_pair(depth: u32, a: (u64, Arc<Document>), b: (u64, Arc<Document>)) -> Node {
    let (a, b) = if a.0 <= b.0 { (a, b) } else { (b, a) };
    build_node(&[a.0, b.0], &mut [a.1, b.1].into_iter(), depth)
}

/// `node` without `key`, and the removed document; `None` when `key` is not there. A node
/// left with a single document is folded into its parent's slot, so the trie stays as
/// shallow as [`HashIndex::build`] would make it.
fn remove_from(node: &Node, depth: u32, h: u64, key: &str) -> Option<(Node, Arc<Document>)> {
    if depth == COLLISION_DEPTH {
        let (i, old) = node.slots.iter().enumerate().find_map(|(i, s)| match s {
            Slot::Doc(d) if &*d.key == key => Some((i, d.clone())),
            _ => None,
        })?;
        return Some((with_slot(node, 0, i, Edit::Remove), old));
    }
    let bit = 1u32 << chunk(h, depth);
    if node.bitmap & bit == 0 {
        return None;
    }
    let i = (node.bitmap & (bit - 1)).count_ones() as usize;
    match node.slots.get(i)? {
        Slot::Doc(d) if &*d.key == key => {
            let old = d.clone();
            Some((with_slot(node, node.bitmap & !bit, i, Edit::Remove), old))
        }
        Slot::Doc(_) => None,
        Slot::Node(child) => {
            let (child, old) = remove_from(child, depth + 1, h, key)?;
            let slot = match &*child.slots {
                [Slot::Doc(d)] => Slot::Doc(d.clone()),
                _ => Slot::Node(child),
            };
            Some((with_slot(node, node.bitmap, i, Edit::Replace(slot)), old))
        }
    }
}

impl PartialEq for HashIndex {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self.iter().all(|d| {
                other
                    .get(&d.key)
                    .is_some_and(|o| Arc::ptr_eq(o, d) || **o == **d)
            })
    }
}

impl Eq for HashIndex {}

impl std::fmt::Debug for HashIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashIndex").field("len", &self.len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::DocMeta;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn doc(key: &str, version: u64) -> Arc<Document> {
        Arc::new(Document {
            key: key.into(),
            value: Arc::from(&b"{}"[..]),
            meta: DocMeta {
                version,
                schema_version: 0,
                created_at: 0,
                updated_at: 0,
                lsn: version,
                expires_at: None,
                sha256: [0; 32],
            },
        })
    }

    /// The hash functions the model test runs under: the real one, and degenerate ones that
    /// force deep paths and full 64-bit collisions.
    const HASHES: [fn(&str) -> u64; 3] = [
        hash,
        // Few distinct values: long shared prefixes and many collision lists.
        |k| hash(k) & 0x8000_0000_0000_0003,
        // Differs only in the last 3 bits: every path goes down to depth 12 and below.
        |k| hash(k) & 0x7,
    ];

    fn hash_with(kind: u8, key: &str) -> u64 {
        HASHES[usize::from(kind)](key)
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u64),
        Remove(u8),
        Get(u8),
        Snapshot,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<u8>(), any::<u64>()).prop_map(|(k, v)| Op::Insert(k, v)),
            2 => any::<u8>().prop_map(Op::Remove),
            2 => any::<u8>().prop_map(Op::Get),
            1 => Just(Op::Snapshot),
        ]
    }

    fn check_same(index: &HashIndex, model: &HashMap<String, u64>, kind: u8) {
        assert_eq!(index.len(), model.len());
        assert_eq!(index.iter().count(), model.len());
        for d in index.iter() {
            assert_eq!(model.get(&*d.key), Some(&d.meta.version), "{}", d.key);
        }
        for (k, v) in model {
            let got = index.get_hashed(hash_with(kind, k), k);
            assert_eq!(got.map(|d| d.meta.version), Some(*v), "{k}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Inserts, removes and lookups against a `HashMap`, under the real hash and two
        /// degenerate ones; earlier clones (snapshots) must never change; and an index
        /// built in bulk from the model's documents equals the one built op by op.
        #[test]
        fn hash_index_matches_a_hash_map_and_clones_never_change(
            kind in 0u8..3,
            ops in proptest::collection::vec(op(), 1..400),
        ) {
            let mut index = HashIndex::default();
            let mut model: HashMap<String, u64> = HashMap::new();
            let mut snapshots: Vec<(HashIndex, HashMap<String, u64>)> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        let key = format!("k{k}");
                        let old = index.insert_hashed(HASHES[usize::from(kind)], doc(&key, v));
                        prop_assert_eq!(old.map(|d| d.meta.version), model.insert(key, v));
                    }
                    Op::Remove(k) => {
                        let key = format!("k{k}");
                        let old = index.remove_hashed(hash_with(kind, &key), &key);
                        prop_assert_eq!(old.map(|d| d.meta.version), model.remove(&key));
                    }
                    Op::Get(k) => {
                        let key = format!("k{k}");
                        let got = index.get_hashed(hash_with(kind, &key), &key);
                        prop_assert_eq!(got.map(|d| d.meta.version), model.get(&key).copied());
                    }
                    Op::Snapshot => snapshots.push((index.clone(), model.clone())),
                }
            }
            check_same(&index, &model, kind);
            for (snap, m) in &snapshots {
                check_same(snap, m, kind);
            }
            let built = HashIndex::build(
                model
                    .iter()
                    .map(|(k, v)| HashedDoc(hash_with(kind, k), doc(k, *v)))
                    .collect(),
            );
            check_same(&built, &model, kind);
            // (Equality looks keys up under the real hash.)
            prop_assert!(kind != 0 || built == index);
            // Whatever inserts and removes made it, the trie is the one a bulk build lays
            // out: removes leave no empty or single-document nodes behind.
            prop_assert_eq!(built.node_bytes(), index.node_bytes());
        }
    }

    #[test]
    fn a_bulk_built_index_of_a_million_keys_costs_under_40_bytes_per_document() {
        // The imbl::HashMap this replaced cost ~450 bytes per document at this size
        // (docs/BENCHMARKS.md); the documents are shared, so only the nodes count.
        let shared = doc("x", 1);
        let n = 1_000_000;
        let docs: Vec<Arc<Document>> = (0..n)
            .map(|i| {
                let mut d = (*shared).clone();
                d.key = format!("player-{i:07}").into();
                Arc::new(d)
            })
            .collect();
        let index = HashIndex::build(
            docs.into_iter()
                .map(|d| HashedDoc(hash(&d.key), d))
                .collect(),
        );
        assert_eq!(index.len(), n);
        let per_doc = index.node_bytes() / n;
        assert!(per_doc < 40, "{per_doc} bytes per document");
        assert!(index.get("player-0123456").is_some());
        assert!(index.get("player-1000000").is_none());
    }
}
