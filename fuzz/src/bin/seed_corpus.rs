//! Writes the seed corpora (`fuzz/corpus/<target>/seed-N`) from the bodies'
//! `seeds()`: objects cut from the vectors and built with fixed keys.
use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut all = citycard_fuzz::proto::seeds();
    all.extend(citycard_fuzz::card::seeds());
    all.extend(citycard_fuzz::reader::seeds());
    let mut n = std::collections::BTreeMap::new();
    for (target, bytes) in all {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        let i = n.entry(target).or_insert(0usize);
        std::fs::write(dir.join(format!("seed-{i:03}")), bytes).expect("write seed");
        *i += 1;
    }
    for (t, i) in n {
        println!("{t}: {i} seeds");
    }
}
