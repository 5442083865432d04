//! The order in which a shard set is read: a pure function of the seed and the position in the
//! stream, so a resumed run reads exactly what an uninterrupted one would, with no state to save.
//!
//! Each epoch visits every sample once. The shards are shuffled, then taken `pool` at a time;
//! the samples of one pool are permuted among themselves (a keyed Feistel permutation, no
//! table). So reads stay within `pool` shards at a time (the shuffle buffer: what the page
//! cache must hold for reads not to go back to the disk), whatever the dataset's size.

/// SplitMix64's finaliser: a keyed hash of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A permutation of `0..n` keyed by `key`: `permute(i, n, key)` for `i < n` is a bijection onto
/// `0..n`. A 4-round Feistel network over the smallest even-bit power of two ≥ n, cycle-walking
/// back into range (fewer than 4 rounds of walking on average).
pub fn permute(i: u64, n: u64, key: u64) -> u64 {
    debug_assert!(i < n);
    if n <= 1 {
        return 0;
    }
    let bits = (64 - (n - 1).leading_zeros()).max(2);
    let half = bits.div_ceil(2);
    let mask = (1u64 << half) - 1;
    let mut x = i;
    loop {
        let (mut l, mut r) = (x >> half, x & mask);
        for round in 0..4u64 {
            let f = mix(key ^ mix(round ^ (r << 8))) & mask;
            (l, r) = (r, l ^ f);
        }
        x = (l << half) | r;
        if x < n {
            return x;
        }
    }
}

/// The shards of a set, their sample counts, and how many are shuffled together.
#[derive(Clone, Debug)]
pub struct Order {
    /// Samples in each shard (in index order) that the stream reads.
    pub counts: Vec<usize>,
    /// Shards whose samples are permuted together (≥ 1).
    pub pool: usize,
    pub seed: u64,
}

impl Order {
    /// Samples per epoch.
    pub fn len(&self) -> u64 {
        self.counts.iter().sum::<usize>() as u64
    }

    /// The sample at stream position `p`: (shard, row within it).
    pub fn at(&self, p: u64) -> (usize, usize) {
        self.span(p, 1)[0]
    }

    /// The samples at stream positions `p..p + n`, in order (each as [`Self::at`]), with each
    /// epoch's shard order and pool sizes worked out once, not once a sample.
    pub fn span(&self, p: u64, n: usize) -> Vec<(usize, usize)> {
        let total = self.len();
        let (mut q, end) = (p, p + n as u64);
        let mut out = Vec::with_capacity(n);
        while q < end {
            let epoch = q / total;
            let stop = end.min((epoch + 1) * total);
            let key = mix(self.seed ^ mix(epoch));
            let shards = self.counts.len() as u64;
            let order: Vec<usize> = (0..shards).map(|s| permute(s, shards, key) as usize).collect();
            let pools: Vec<&[usize]> = order.chunks(self.pool.max(1)).collect();
            let sizes: Vec<u64> = pools.iter().map(|pool| pool.iter().map(|&s| self.counts[s] as u64).sum()).collect();
            out.extend((q..stop).map(|r| self.locate(r % total, key, &pools, &sizes)));
            q = stop;
        }
        out
    }

    /// Position `o` within an epoch keyed `key` whose shards form `pools` of `sizes` samples.
    fn locate(&self, mut o: u64, key: u64, pools: &[&[usize]], sizes: &[u64]) -> (usize, usize) {
        for (k, (pool, &size)) in pools.iter().zip(sizes).enumerate() {
            if o >= size {
                o -= size;
                continue;
            }
            let mut q = permute(o, size, mix(key ^ mix(k as u64 + 1)));
            for &s in pool.iter() {
                if q < self.counts[s] as u64 {
                    return (s, q as usize);
                }
                q -= self.counts[s] as u64;
            }
        }
        unreachable!("position {o} within an epoch of {} samples", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_is_a_bijection_for_every_size() {
        for n in 1..200u64 {
            let mut seen: Vec<u64> = (0..n).map(|i| permute(i, n, 7 + n)).collect();
            seen.sort();
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n = {n}");
        }
        let a: Vec<u64> = (0..50).map(|i| permute(i, 50, 1)).collect();
        let b: Vec<u64> = (0..50).map(|i| permute(i, 50, 2)).collect();
        assert_ne!(a, b, "keys give different orders");
        assert_ne!(a, (0..50).collect::<Vec<_>>(), "not the identity");
    }

    #[test]
    fn each_epoch_visits_every_sample_once_within_pools_of_shards() {
        let order = Order { counts: vec![5, 5, 5, 5, 3], pool: 2, seed: 42 };
        let n = order.len();
        let epoch = |e: u64| (e * n..(e + 1) * n).map(|p| order.at(p)).collect::<Vec<_>>();
        let (e0, e1) = (epoch(0), epoch(1));
        for e in [&e0, &e1] {
            let mut s = e.clone();
            s.sort();
            let all: Vec<(usize, usize)> = order.counts.iter().enumerate().flat_map(|(s, &c)| (0..c).map(move |r| (s, r))).collect();
            assert_eq!(s, all);
            // Grouped greedily into runs touching at most 2 shards, an epoch makes exactly the
            // 3 pools of 5 shards by 2 (a global shuffle would make many more runs).
            let mut runs: Vec<Vec<usize>> = vec![vec![]];
            for &(shard, _) in e {
                let run = runs.last_mut().unwrap();
                if !run.contains(&shard) {
                    if run.len() == 2 {
                        runs.push(vec![shard]);
                    } else {
                        run.push(shard);
                    }
                }
            }
            assert_eq!(runs.len(), 3, "{runs:?}");
        }
        assert_ne!(e0, e1, "epochs are shuffled differently");
        assert_eq!(order.at(17), order.at(17), "a pure function of the position");
        assert_eq!(order.span(n - 3, 7), (n - 3..n + 4).map(|p| order.at(p)).collect::<Vec<_>>(), "a span across epochs");
        let other = Order { seed: 43, ..order.clone() };
        assert_ne!(epoch(0), (0..n).map(|p| other.at(p)).collect::<Vec<_>>());
    }
}
