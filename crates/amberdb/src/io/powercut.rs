//! A power-cut simulator: a [`FaultInjector`] that mirrors every mutation under a directory
//! into a model of what the disk holds durably, cuts power at a chosen operation, and then
//! writes out one state the disk could be in after power loss.
//!
//! The model follows Linux semantics, conservatively (as SQLite's crash-test VFS, redb's
//! crash backend and LazyFS do):
//!
//! - File data written since the file's last `fsync`/`fdatasync` may be lost: after the cut a
//!   file holds its synced content plus a prefix of the later writes and truncations, the
//!   last of them possibly torn at any byte.
//! - `fsync`/`fdatasync` of a file makes its data and size durable, not its name.
//! - A create, rename or removal is durable once the directory holding the name was fsynced
//!   after it (both directories for a rename; every directory of a recursive removal). Until
//!   then it may be undone. Names are journaled in order, so after the cut the not-yet-durable
//!   ones are undone from some point on: a prefix of them survives (often none).
//! - A new directory is reachable only once its own name is durable in its parent.
//! - From the cut on every operation fails (`EIO`), reads included: the process is dead.
//!
//! Operations are counted in the order they are admitted; the cut happens before operation
//! number `cut_at` (0-based, mutations only) runs. Operations admitted before the cut are
//! still recorded when they finish, so an acknowledgement that a finished fsync allowed is
//! never contradicted by the model.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use super::{Fault, FaultInjector, IoOp};

/// A small deterministic generator (SplitMix64): the cut's choices follow from the seed.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max`.
    fn upto(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            return self.next();
        }
        self.next() % (max + 1)
    }
}

#[derive(Debug, Clone)]
enum DataOp {
    Append(Vec<u8>),
    SetLen(u64),
}

fn apply_data(content: &mut Vec<u8>, op: &DataOp) {
    match op {
        DataOp::Append(b) => content.extend_from_slice(b),
        DataOp::SetLen(n) => content.resize(usize::try_from(*n).unwrap_or(usize::MAX), 0),
    }
}

#[derive(Debug, Clone, Default)]
struct FileNode {
    durable: Vec<u8>,
    volatile: Vec<u8>,
    pending: Vec<DataOp>,
}

#[derive(Debug, Clone, Default)]
struct DirNode {
    durable: BTreeMap<String, usize>,
    volatile: BTreeMap<String, usize>,
}

#[derive(Debug, Clone)]
enum Node {
    File(FileNode),
    Dir(DirNode),
}

/// A change of one directory entry; `synced` holds the directories that still need an fsync
/// before it is durable.
#[derive(Debug, Clone)]
enum NameChange {
    Link {
        dir: usize,
        name: String,
        ino: usize,
    },
    Unlink {
        dir: usize,
        name: String,
        ino: usize,
    },
}

#[derive(Debug, Clone)]
struct PendingName {
    /// Changes applied together (a rename is an unlink and a link, atomically).
    changes: Vec<NameChange>,
    /// Directories that must still be fsynced.
    unsynced: Vec<usize>,
}

fn apply_name(dirs: &mut [Node], c: &NameChange) {
    match c {
        NameChange::Link { dir, name, ino } => {
            if let Some(Node::Dir(d)) = dirs.get_mut(*dir) {
                d.durable.insert(name.clone(), *ino);
            }
        }
        NameChange::Unlink { dir, name, ino } => {
            if let Some(Node::Dir(d)) = dirs.get_mut(*dir) {
                if d.durable.get(name) == Some(ino) {
                    d.durable.remove(name);
                }
            }
        }
    }
}

#[derive(Debug)]
struct Model {
    root: PathBuf,
    nodes: Vec<Node>,
    pending: Vec<PendingName>,
    next_op: u64,
    cut_at: Option<u64>,
    cut: bool,
    /// Operations recorded (mutations that took effect).
    recorded: u64,
    /// Operations the model could not follow (a bug in the model or an operation on a path
    /// it does not know); a test asserts there are none.
    errors: Vec<String>,
    /// Description of the operation the power was cut before.
    cut_before: Option<String>,
}

/// What [`PowerCut::materialize`] wrote.
#[derive(Debug, Clone, Default)]
pub struct CutReport {
    /// The operation the power was cut before (none: materialized without a cut).
    pub cut_before: Option<String>,
    /// Mutations admitted before the cut.
    pub ops_before_cut: u64,
    /// Name changes (create, rename, remove) not yet durable at the cut.
    pub pending_names: usize,
    /// How many of them the materialized state keeps (in order).
    pub names_kept: usize,
    /// Files whose unsynced data was dropped or torn (path relative to the root, bytes
    /// unsynced, bytes kept of them).
    pub torn_files: Vec<(PathBuf, u64, u64)>,
}

/// A power-cut simulator over one directory tree; install it with [`super::install`].
#[derive(Debug)]
pub struct PowerCut {
    model: Mutex<Model>,
    /// With `Some(n)`, unsynced appended data is lost in `n`-byte sectors independently (a
    /// later sector may survive an earlier one, which reads back as zeros), instead of as a
    /// prefix.
    sectors: Option<usize>,
}

impl PowerCut {
    /// A simulator over `root`, whose current content counts as durable. Power is cut
    /// before mutation number `cut_at` (0-based; `None`: only by [`PowerCut::cut_now`]).
    pub fn new(root: &Path, cut_at: Option<u64>) -> io::Result<PowerCut> {
        let mut nodes = vec![Node::Dir(DirNode::default())];
        scan(root, 0, &mut nodes)?;
        Ok(PowerCut {
            model: Mutex::new(Model {
                root: root.to_owned(),
                nodes,
                pending: vec![],
                next_op: 0,
                cut_at,
                cut: false,
                recorded: 0,
                errors: vec![],
                cut_before: None,
            }),
            sectors: None,
        })
    }

    /// Loses unsynced appended data in `sector`-byte sectors, each independently (the disk
    /// wrote some sectors of a write and not others), instead of as a prefix. Sectors are
    /// aligned to file offsets; a missing sector below the surviving file size reads as
    /// zeros.
    pub fn with_torn_sectors(mut self, sector: usize) -> Self {
        self.sectors = Some(sector.max(1));
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mutations admitted so far (run a workload without a cut to learn its length).
    pub fn ops(&self) -> u64 {
        self.lock().next_op
    }

    /// Cuts the power now: every later operation fails.
    pub fn cut_now(&self) {
        let mut m = self.lock();
        if !m.cut {
            m.cut = true;
            m.cut_before = Some("an explicit cut".into());
        }
    }

    /// Whether the power is off.
    pub fn is_cut(&self) -> bool {
        self.lock().cut
    }

    /// Operations the model could not follow; empty unless the simulator has a bug.
    pub fn model_errors(&self) -> Vec<String> {
        self.lock().errors.clone()
    }

    /// Writes into `into` (a new or empty directory) one state the disk could hold after
    /// the power cut, choosing what unsynced data and names survive from `seed`. Call it
    /// after the engine stopped (its handles dropped); it can be called again with other
    /// seeds.
    pub fn materialize(&self, into: &Path, seed: u64) -> io::Result<CutReport> {
        let m = self.lock();
        let mut rng = Rng(seed);
        let mut nodes = m.nodes.clone();
        let kept = if m.pending.is_empty() || rng.upto(1) == 0 {
            0
        } else {
            rng.upto(m.pending.len() as u64) as usize
        };
        for p in m.pending.iter().take(kept) {
            for c in &p.changes {
                apply_name(&mut nodes, c);
            }
        }
        let mut report = CutReport {
            cut_before: m.cut_before.clone(),
            ops_before_cut: m.next_op,
            pending_names: m.pending.len(),
            names_kept: kept,
            torn_files: vec![],
        };
        std::fs::create_dir_all(into)?;
        write_tree(
            &nodes,
            0,
            into,
            Path::new(""),
            &mut rng,
            self.sectors,
            &mut report,
        )?;
        Ok(report)
    }
}

fn scan(dir: &Path, ino: usize, nodes: &mut Vec<Node>) -> io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        let child = nodes.len();
        if e.file_type()?.is_dir() {
            nodes.push(Node::Dir(DirNode::default()));
            scan(&e.path(), child, nodes)?;
        } else {
            let bytes = std::fs::read(e.path())?;
            nodes.push(Node::File(FileNode {
                durable: bytes.clone(),
                volatile: bytes,
                pending: vec![],
            }));
        }
        if let Some(Node::Dir(d)) = nodes.get_mut(ino) {
            d.durable.insert(name.clone(), child);
            d.volatile.insert(name, child);
        }
    }
    Ok(())
}

fn write_tree(
    nodes: &[Node],
    ino: usize,
    out: &Path,
    rel: &Path,
    rng: &mut Rng,
    sectors: Option<usize>,
    report: &mut CutReport,
) -> io::Result<()> {
    let Some(Node::Dir(d)) = nodes.get(ino) else {
        return Ok(());
    };
    for (name, child) in &d.durable {
        let path = out.join(name);
        let rel = rel.join(name);
        match nodes.get(*child) {
            Some(Node::Dir(_)) => {
                std::fs::create_dir(&path)?;
                write_tree(nodes, *child, &path, &rel, rng, sectors, report)?;
            }
            Some(Node::File(f)) => {
                let mut content = f.durable.clone();
                let appends_only = f.pending.iter().all(|op| matches!(op, DataOp::Append(_)));
                if let (Some(sector), true, false) = (sectors, appends_only, f.pending.is_empty()) {
                    // The size may be anywhere from the synced one to the written one; each
                    // sector in between independently holds what was written or zeros.
                    let start = f.durable.len();
                    let len = start + rng.upto((f.volatile.len() - start) as u64) as usize;
                    let mut off = start;
                    while off < len {
                        let end = ((off / sector + 1) * sector).min(len);
                        match (rng.upto(1) == 0, f.volatile.get(off..end)) {
                            (true, Some(b)) => content.extend_from_slice(b),
                            _ => content.resize(end, 0),
                        }
                        off = end;
                    }
                    let unsynced = (f.volatile.len() - start) as u64;
                    if content != f.volatile {
                        report.torn_files.push((
                            rel.clone(),
                            unsynced,
                            (content.len() - start) as u64,
                        ));
                    }
                } else if !f.pending.is_empty() {
                    // Often all or nothing of the unsynced data, otherwise a prefix of it.
                    let n = f.pending.len() as u64;
                    let keep = match rng.upto(3) {
                        0 => 0,
                        1 => n,
                        _ => rng.upto(n),
                    } as usize;
                    for op in f.pending.iter().take(keep) {
                        apply_data(&mut content, op);
                    }
                    if let Some(DataOp::Append(b)) = f.pending.get(keep) {
                        let part = rng.upto(b.len() as u64) as usize;
                        content.extend_from_slice(b.get(..part).unwrap_or_default());
                    }
                    let unsynced = f.volatile.len().saturating_sub(f.durable.len()) as u64;
                    let kept = content.len().saturating_sub(f.durable.len()) as u64;
                    if content != f.volatile {
                        report.torn_files.push((rel.clone(), unsynced, kept));
                    }
                }
                std::fs::write(&path, &content)?;
            }
            None => {}
        }
    }
    Ok(())
}

impl Model {
    /// The path relative to the root as names, or `None` outside the root.
    fn rel(&self, path: &Path) -> Option<Vec<String>> {
        let rest = path.strip_prefix(&self.root).ok()?;
        let mut out = vec![];
        for c in rest.components() {
            match c {
                Component::Normal(n) => out.push(n.to_str()?.to_owned()),
                Component::CurDir => {}
                Component::ParentDir => {
                    out.pop()?;
                }
                _ => return None,
            }
        }
        Some(out)
    }

    fn lookup(&self, names: &[String]) -> Option<usize> {
        let mut ino = 0;
        for n in names {
            match self.nodes.get(ino) {
                Some(Node::Dir(d)) => ino = *d.volatile.get(n)?,
                _ => return None,
            }
        }
        Some(ino)
    }

    /// (parent directory, name, existing inode) of a path under the root.
    fn entry(&self, path: &Path) -> Option<(usize, String, Option<usize>)> {
        let mut names = self.rel(path)?;
        let name = names.pop()?;
        let dir = self.lookup(&names)?;
        let Some(Node::Dir(d)) = self.nodes.get(dir) else {
            return None;
        };
        let existing = d.volatile.get(&name).copied();
        Some((dir, name, existing))
    }

    fn file(&mut self, path: &Path) -> Option<&mut FileNode> {
        let ino = self.lookup(&self.rel(path)?)?;
        match self.nodes.get_mut(ino) {
            Some(Node::File(f)) => Some(f),
            _ => None,
        }
    }

    fn dir_mut(&mut self, ino: usize) -> Option<&mut DirNode> {
        match self.nodes.get_mut(ino) {
            Some(Node::Dir(d)) => Some(d),
            _ => None,
        }
    }

    fn error(&mut self, op: &IoOp<'_>, why: &str) {
        self.errors.push(format!("{op}: {why}"));
    }

    fn change_names(&mut self, changes: Vec<NameChange>) {
        let mut unsynced = vec![];
        for c in &changes {
            let (NameChange::Link { dir, name, ino } | NameChange::Unlink { dir, name, ino }) = c;
            if let Some(d) = self.dir_mut(*dir) {
                match c {
                    NameChange::Link { .. } => {
                        d.volatile.insert(name.clone(), *ino);
                    }
                    NameChange::Unlink { .. } => {
                        d.volatile.remove(name);
                    }
                }
            }
            if !unsynced.contains(dir) {
                unsynced.push(*dir);
            }
        }
        self.pending.push(PendingName { changes, unsynced });
    }

    fn new_file(&mut self, op: &IoOp<'_>, path: &Path) {
        match self.entry(path) {
            Some((_, _, Some(ino))) => match self.nodes.get_mut(ino) {
                Some(Node::File(f)) => {
                    f.volatile.clear();
                    f.pending.push(DataOp::SetLen(0));
                }
                _ => self.error(op, "not a file"),
            },
            Some((dir, name, None)) => {
                let ino = self.nodes.len();
                self.nodes.push(Node::File(FileNode::default()));
                self.change_names(vec![NameChange::Link { dir, name, ino }]);
            }
            None => self.error(op, "parent directory unknown"),
        }
    }

    /// Unlinks of everything under (and including) `ino` named `name` in `dir`, children
    /// first, as a recursive removal performs them.
    fn unlink_tree(&self, dir: usize, name: &str, ino: usize, out: &mut Vec<NameChange>) {
        if let Some(Node::Dir(d)) = self.nodes.get(ino) {
            for (n, c) in &d.volatile {
                self.unlink_tree(ino, n, *c, out);
            }
        }
        out.push(NameChange::Unlink {
            dir,
            name: name.to_owned(),
            ino,
        });
    }

    fn record(&mut self, op: IoOp<'_>) {
        self.recorded += 1;
        match op {
            IoOp::Create { path } => self.new_file(&op, path),
            IoOp::Open { path, create } => {
                if create && matches!(self.entry(path), Some((_, _, None))) {
                    self.new_file(&op, path);
                }
            }
            IoOp::Write { path, data, .. } => match self.file(path) {
                Some(f) => {
                    f.volatile.extend_from_slice(data);
                    f.pending.push(DataOp::Append(data.to_vec()));
                }
                None => self.error(&op, "no such file in the model"),
            },
            IoOp::SetLen { path, len } => match self.file(path) {
                Some(f) => {
                    let op = DataOp::SetLen(len);
                    apply_data(&mut f.volatile, &op);
                    f.pending.push(op);
                }
                None => self.error(&op, "no such file in the model"),
            },
            IoOp::Sync { path } => match self.rel(path).and_then(|n| self.lookup(&n)) {
                Some(ino) => match self.nodes.get_mut(ino) {
                    Some(Node::File(f)) => {
                        f.durable = f.volatile.clone();
                        f.pending.clear();
                    }
                    Some(Node::Dir(_)) => self.sync_dir(ino),
                    None => {}
                },
                None => self.error(&op, "no such file in the model"),
            },
            IoOp::SyncDir { path } => match self.rel(path).and_then(|n| self.lookup(&n)) {
                Some(ino) => self.sync_dir(ino),
                None => self.error(&op, "no such directory in the model"),
            },
            IoOp::Rename { from, to } => match (self.entry(from), self.entry(to)) {
                (Some((fdir, fname, Some(ino))), Some((tdir, tname, replaced))) => {
                    if fdir == tdir && fname == tname {
                        return;
                    }
                    let mut changes = vec![];
                    if let Some(r) = replaced {
                        changes.push(NameChange::Unlink {
                            dir: tdir,
                            name: tname.clone(),
                            ino: r,
                        });
                    }
                    changes.push(NameChange::Unlink {
                        dir: fdir,
                        name: fname,
                        ino,
                    });
                    changes.push(NameChange::Link {
                        dir: tdir,
                        name: tname,
                        ino,
                    });
                    self.change_names(changes);
                }
                _ => self.error(&op, "rename of a path the model does not know"),
            },
            IoOp::Exchange { a, b } => match (self.entry(a), self.entry(b)) {
                (Some((adir, aname, Some(aino))), Some((bdir, bname, Some(bino)))) => {
                    if adir == bdir && aname == bname {
                        return;
                    }
                    // One journaled step: both names change together or not at all.
                    self.change_names(vec![
                        NameChange::Unlink {
                            dir: adir,
                            name: aname.clone(),
                            ino: aino,
                        },
                        NameChange::Unlink {
                            dir: bdir,
                            name: bname.clone(),
                            ino: bino,
                        },
                        NameChange::Link {
                            dir: adir,
                            name: aname,
                            ino: bino,
                        },
                        NameChange::Link {
                            dir: bdir,
                            name: bname,
                            ino: aino,
                        },
                    ]);
                }
                _ => self.error(&op, "exchange of a path the model does not know"),
            },
            IoOp::RemoveFile { path } => match self.entry(path) {
                Some((dir, name, Some(ino))) => {
                    self.change_names(vec![NameChange::Unlink { dir, name, ino }])
                }
                _ => self.error(&op, "no such file in the model"),
            },
            IoOp::RemoveDir { path } => match self.entry(path) {
                Some((dir, name, Some(ino))) => {
                    let mut changes = vec![];
                    self.unlink_tree(dir, &name, ino, &mut changes);
                    // Each unlink is its own journaled step, children first.
                    for c in changes {
                        self.change_names(vec![c]);
                    }
                }
                _ => self.error(&op, "no such directory in the model"),
            },
            IoOp::CreateDir { path } => match self.entry(path) {
                Some((dir, name, None)) => {
                    let ino = self.nodes.len();
                    self.nodes.push(Node::Dir(DirNode::default()));
                    self.change_names(vec![NameChange::Link { dir, name, ino }]);
                }
                _ => self.error(&op, "directory exists or its parent is unknown"),
            },
            IoOp::Read { .. } | IoOp::ReadDir { .. } => {}
        }
    }

    /// An fsync of directory `ino`: name changes in it are durable once every directory they
    /// touch was synced.
    fn sync_dir(&mut self, ino: usize) {
        let mut still = vec![];
        for mut p in std::mem::take(&mut self.pending) {
            p.unsynced.retain(|d| *d != ino);
            if p.unsynced.is_empty() {
                for c in &p.changes {
                    apply_name(&mut self.nodes, c);
                }
            } else {
                still.push(p);
            }
        }
        self.pending = still;
    }
}

fn dead() -> io::Error {
    io::Error::from_raw_os_error(5)
}

impl FaultInjector for PowerCut {
    fn on_io(&self, op: IoOp<'_>) -> Fault {
        let mut m = self.lock();
        if m.cut {
            return Fault::Fail(dead());
        }
        if !op.is_mutation() {
            return Fault::Proceed;
        }
        let n = m.next_op;
        if m.cut_at.is_some_and(|c| n >= c) {
            m.cut = true;
            m.cut_before = Some(format!("#{n}: {op}"));
            return Fault::Fail(dead());
        }
        m.next_op += 1;
        Fault::Proceed
    }

    fn after_io(&self, op: IoOp<'_>, done: bool) {
        if done && op.is_mutation() {
            self.lock().record(op);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::io::{self as fs, Faults};

    fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        for e in walk(dir) {
            if e.is_file() {
                let rel = e.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&e).unwrap());
            }
        }
        out
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = vec![];
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
        out
    }

    #[test]
    fn synced_data_and_synced_names_survive_every_cut() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let pc = std::sync::Arc::new(PowerCut::new(&root, None).unwrap());
        let _scope = fs::install(&root, pc.clone());
        let none = Faults::none();
        fs::create_dir_all(&root.join("d"), &none).unwrap();
        let mut f = fs::create(&root.join("d/a"), &none).unwrap();
        f.write_all(b"synced").unwrap();
        f.sync_data().unwrap();
        fs::sync_dir(&root.join("d"), &none).unwrap();
        f.write_all(b"-unsynced").unwrap();
        let mut g = fs::create(&root.join("d/b"), &none).unwrap();
        g.write_all(b"no dir sync").unwrap();
        g.sync_all().unwrap();
        pc.cut_now();
        assert!(
            fs::read(&root.join("d/a"), &none).is_err(),
            "dead after the cut"
        );
        assert!(pc.model_errors().is_empty(), "{:?}", pc.model_errors());
        let mut saw_b = false;
        let mut saw_b_missing = false;
        for seed in 0..64 {
            let out = tmp.path().join(format!("cut{seed}"));
            pc.materialize(&out, seed).unwrap();
            let got = files(&out);
            let a = got.get("d/a").expect("a was created, synced, dir synced");
            assert!(a.starts_with(b"synced"), "{a:?}");
            assert!(b"synced-unsynced".starts_with(a), "{a:?}");
            match got.get("d/b") {
                Some(b) => {
                    saw_b = true;
                    assert_eq!(b, b"no dir sync", "synced data, name maybe durable");
                }
                None => saw_b_missing = true,
            }
        }
        assert!(
            saw_b && saw_b_missing,
            "both outcomes of an unsynced name occur"
        );
    }

    #[test]
    fn a_rename_is_undone_until_both_directories_are_synced() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        std::fs::create_dir(root.join("x")).unwrap();
        std::fs::create_dir(root.join("y")).unwrap();
        std::fs::write(root.join("x/f"), b"old").unwrap();
        let pc = std::sync::Arc::new(PowerCut::new(&root, None).unwrap());
        let _scope = fs::install(&root, pc.clone());
        let none = Faults::none();
        fs::rename(&root.join("x/f"), &root.join("y/f"), &none).unwrap();
        fs::sync_dir(&root.join("y"), &none).unwrap();
        pc.cut_now();
        let mut outcomes = std::collections::BTreeSet::new();
        for seed in 0..32 {
            let out = tmp.path().join(format!("out{seed}"));
            pc.materialize(&out, seed).unwrap();
            let got = files(&out);
            // Atomic: in exactly one place, never both, never neither.
            let (x, y) = (got.contains_key("x/f"), got.contains_key("y/f"));
            assert!(x != y, "{got:?}");
            outcomes.insert(y);
        }
        assert_eq!(outcomes.len(), 2, "undone sometimes, kept sometimes");
    }

    #[test]
    fn power_is_cut_before_the_chosen_operation() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("r");
        std::fs::create_dir(&root).unwrap();
        let pc = std::sync::Arc::new(PowerCut::new(&root, Some(2)).unwrap());
        let _scope = fs::install(&root, pc.clone());
        let none = Faults::none();
        let mut f = fs::create(&root.join("f"), &none).unwrap(); // #0
        f.write_all(b"1").unwrap(); // #1
        let e = f.sync_data().unwrap_err(); // #2: cut
        assert!(e.to_string().contains("fsync of"), "{e}");
        assert!(pc.is_cut());
        assert!(f.write_all(b"2").is_err());
        let out = tmp.path().join("out");
        let r = pc.materialize(&out, 7).unwrap();
        assert!(r.cut_before.unwrap().contains("#2: fsync"));
        assert_eq!(r.ops_before_cut, 2);
    }
}
