//! Train, validation and test parts by ratio: seeded, optionally stratified by class and
//! optionally grouped, so that no patient lands in two parts (chapter 5).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::{Error, Result};

/// How to split: the seed of the shuffle, and optionally the class of each sample (keep
/// class shares equal across the parts) and the group of each sample (keep each group,
/// such as a patient, inside one part).
#[derive(Debug, Clone, Copy)]
pub struct SplitOptions<'a, G = String> {
    /// The same seed gives the same split.
    pub seed: u64,
    /// The class of each sample, for a stratified split.
    pub stratify: Option<&'a [usize]>,
    /// The group of each sample, e.g. its patient id.
    pub groups: Option<&'a [G]>,
}

impl<'a> SplitOptions<'a, String> {
    /// A plain shuffled split with this seed.
    pub fn seeded(seed: u64) -> Self {
        SplitOptions {
            seed,
            stratify: None,
            groups: None,
        }
    }
}

impl<'a, G> SplitOptions<'a, G> {
    /// Keeps each class's share the same in every part.
    pub fn stratify(mut self, classes: &'a [usize]) -> Self {
        self.stratify = Some(classes);
        self
    }

    /// Keeps every group inside one part.
    pub fn groups<H>(self, groups: &'a [H]) -> SplitOptions<'a, H> {
        SplitOptions {
            seed: self.seed,
            stratify: self.stratify,
            groups: Some(groups),
        }
    }
}

/// The row numbers of each part, each part in shuffled order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Split {
    /// What the model learns from.
    pub train: Vec<usize>,
    /// What tunes the training: when to stop, which settings win.
    pub val: Vec<usize>,
    /// What is looked at once, at the end, to say how good the model is.
    pub test: Vec<usize>,
}

impl Split {
    /// `[train, val, test]` sizes.
    pub fn sizes(&self) -> [usize; 3] {
        [self.train.len(), self.val.len(), self.test.len()]
    }

    /// The three parts with their names.
    pub fn parts(&self) -> [(&'static str, &[usize]); 3] {
        [
            ("train", &self.train),
            ("val", &self.val),
            ("test", &self.test),
        ]
    }

    /// The part each of `n` rows is in (`"train"`, `"val"`, `"test"`), for a table column.
    pub fn part_names(&self, n: usize) -> Vec<&'static str> {
        let mut names = vec![""; n];
        for (name, rows) in self.parts() {
            for &i in rows {
                names[i] = name;
            }
        }
        names
    }

    /// How many groups (patients) have samples in more than one part: the leak a plain
    /// random split causes.
    pub fn leaked_groups<G: Eq + Hash>(&self, groups: &[G]) -> usize {
        let mut seen: HashMap<&G, HashSet<usize>> = HashMap::new();
        for (part, (_, rows)) in self.parts().iter().enumerate() {
            for &i in rows.iter() {
                seen.entry(&groups[i]).or_default().insert(part);
            }
        }
        seen.values().filter(|parts| parts.len() > 1).count()
    }
}

/// Splits `n` samples into train, validation and test parts by `split_ratio`, e.g.
/// `[0.7, 0.15, 0.15]` (the ratios need not add up to 1: `[7.0, 1.5, 1.5]` is the same).
///
/// The sizes follow scikit-learn's `train_test_split`: the validation and test parts are
/// rounded up, train gets the rest; 150 samples at 7 : 1.5 : 1.5 give 104, 23 and 23.
/// Stratified, each class is split the same way, the rounding spread so that the parts
/// keep their sizes. Grouped, whole groups are dealt out in shuffled order until each
/// part reaches its size, so sizes come out near, not exactly at, the ratios.
pub fn train_val_test_split<G: Eq + Hash + Clone>(
    n: usize,
    split_ratio: [f64; 3],
    options: &SplitOptions<G>,
) -> Result<Split> {
    let total: f64 = split_ratio.iter().sum();
    if split_ratio.iter().any(|r| !r.is_finite() || *r < 0.0) || total <= 0.0 {
        return Err(Error::BadArgument(format!(
            "split_ratio {split_ratio:?} must be three non-negative numbers, not all 0, e.g. [0.7, 0.15, 0.15]"
        )));
    }
    let n_test = (n as f64 * split_ratio[2] / total).ceil() as usize;
    let n_val = (n as f64 * split_ratio[1] / total).ceil() as usize;
    if n == 0 || (split_ratio[0] > 0.0 && n_val + n_test >= n) {
        return Err(Error::BadArgument(format!(
            "{n} samples are too few to split by {split_ratio:?}; the training part would be empty"
        )));
    }
    for (what, len) in [
        ("stratify", options.stratify.map(<[usize]>::len)),
        ("groups", options.groups.map(<[G]>::len)),
    ] {
        if let Some(len) = len.filter(|&len| len != n) {
            return Err(Error::BadArgument(format!(
                "{what} has {len} entries for {n} samples; give one per sample"
            )));
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let classes: Vec<usize> = options.stratify.map_or(vec![0; n], <[usize]>::to_vec);
    let n_classes = classes.iter().max().map_or(0, |m| m + 1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); n_classes];
    for (i, &c) in classes.iter().enumerate() {
        by_class[c].push(i);
    }
    let class_sizes: Vec<usize> = by_class.iter().map(Vec::len).collect();
    let test_sizes = apportion(n_test, &class_sizes);
    let rest: Vec<usize> = class_sizes
        .iter()
        .zip(&test_sizes)
        .map(|(c, t)| c - t)
        .collect();
    let val_sizes = apportion(n_val, &rest);

    let mut split = Split::default();
    for (class, rows) in by_class.iter().enumerate() {
        let (test_size, val_size) = (test_sizes[class], val_sizes[class]);
        match options.groups {
            None => {
                let mut rows = rows.clone();
                rows.shuffle(&mut rng);
                split.test.extend(&rows[..test_size]);
                split.val.extend(&rows[test_size..test_size + val_size]);
                split.train.extend(&rows[test_size + val_size..]);
            }
            Some(groups) => {
                // A group belongs to the class of its first sample.
                let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
                let mut first_of: HashMap<&G, usize> = HashMap::new();
                for (i, group) in groups.iter().enumerate() {
                    let first = *first_of.entry(group).or_insert(i);
                    if classes[first] == class {
                        members.entry(first).or_default().push(i);
                    }
                }
                let mut members: Vec<Vec<usize>> = members.into_values().collect();
                members.shuffle(&mut rng);
                let (mut test, mut val) = (0, 0);
                for group in members {
                    if test < test_size {
                        test += group.len();
                        split.test.extend(group);
                    } else if val < val_size {
                        val += group.len();
                        split.val.extend(group);
                    } else {
                        split.train.extend(group);
                    }
                }
            }
        }
    }
    for part in [&mut split.train, &mut split.val, &mut split.test] {
        part.shuffle(&mut rng);
    }
    Ok(split)
}

/// Shares `total` out over classes in proportion to their sizes, rounding down and then
/// giving the leftovers to the largest remainders (ties: the larger class, then the
/// lower class number), never more than a class has.
fn apportion(total: usize, sizes: &[usize]) -> Vec<usize> {
    let n: usize = sizes.iter().sum();
    if n == 0 {
        return vec![0; sizes.len()];
    }
    let exact: Vec<f64> = sizes
        .iter()
        .map(|&s| total as f64 * s as f64 / n as f64)
        .collect();
    let mut shares: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        rb.total_cmp(&ra)
            .then(sizes[b].cmp(&sizes[a]))
            .then(a.cmp(&b))
    });
    let mut left = total.saturating_sub(shares.iter().sum());
    for &class in order.iter().cycle().take(sizes.len() * 2) {
        if left == 0 {
            break;
        }
        if shares[class] < sizes[class] {
            shares[class] += 1;
            left -= 1;
        }
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iris_sized_split_follows_the_ratios() {
        let classes: Vec<usize> = (0..150).map(|i| i / 50).collect();
        let options = SplitOptions::seeded(42).stratify(&classes);
        let split = train_val_test_split(150, [0.7, 0.15, 0.15], &options).unwrap();
        assert_eq!(split.sizes(), [104, 23, 23]);
        let mut all: Vec<usize> = split.parts().iter().flat_map(|(_, r)| r.to_vec()).collect();
        all.sort();
        assert_eq!(all, (0..150).collect::<Vec<_>>());
        for (_, rows) in split.parts() {
            let mut per_class = [0; 3];
            rows.iter().for_each(|&i| per_class[classes[i]] += 1);
            let (min, max) = (per_class.iter().min(), per_class.iter().max());
            assert!(max.unwrap() - min.unwrap() <= 1, "{per_class:?}");
        }
        let again = train_val_test_split(150, [7.0, 1.5, 1.5], &options).unwrap();
        assert_eq!(split, again);
    }

    #[test]
    fn groups_never_span_two_parts() {
        let groups: Vec<String> = (0..300).map(|i| format!("p{}", i / 3)).collect();
        let classes: Vec<usize> = (0..300).map(|i| (i / 3) % 2).collect();
        let plain = train_val_test_split(300, [0.7, 0.15, 0.15], &SplitOptions::seeded(1)).unwrap();
        assert!(plain.leaked_groups(&groups) > 10);
        let grouped = SplitOptions::seeded(1).stratify(&classes).groups(&groups);
        let split = train_val_test_split(300, [0.7, 0.15, 0.15], &grouped).unwrap();
        assert_eq!(split.leaked_groups(&groups), 0);
        let [train, val, test] = split.sizes();
        assert_eq!(train + val + test, 300);
        assert!(
            (45..=51).contains(&val) && (45..=51).contains(&test),
            "{val} {test}"
        );
    }

    #[test]
    fn bad_ratios_and_lengths_are_refused() {
        let options = SplitOptions::seeded(0);
        for ratio in [[0.0; 3], [-1.0, 1.0, 1.0], [f64::NAN, 1.0, 1.0]] {
            assert!(train_val_test_split(10, ratio, &options).is_err());
        }
        assert!(train_val_test_split(2, [0.7, 0.15, 0.15], &options).is_err());
        let classes = [0usize; 3];
        let options = SplitOptions::seeded(0).stratify(&classes);
        assert!(train_val_test_split(10, [0.7, 0.15, 0.15], &options).is_err());
    }
}
