//! Where a run's training samples come from, and one step's batch drawn from there.

use crate::data::order::Order;
use crate::data::Dataset;
use crate::shards::{ShardKind, ShardSet};
use crate::rng::Rng;
use mvdit_model::Result;

/// A run's training samples, owned (what a run holds; [`Self::source`] is what a step reads).
pub enum TrainData {
    /// In host memory (the digits, an image folder, or any [`Dataset`]): each sample of a batch
    /// drawn with replacement by the run's RNG.
    Memory(Dataset),
    /// A shard set read in its seeded [`Order`]: sample j of the step with index s (0-based)
    /// is stream position s·B + j, so the order needs no state of its own.
    Shards { set: ShardSet, order: Order },
}

/// What each sample of a batch is conditioned on.
#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    /// Class labels (the null class where dropped).
    Labels(Vec<u32>),
    /// Caption contexts [n, Lt, D] flat (the empty prompt's where dropped).
    Contexts(Vec<f32>),
}

impl Cond {
    /// Samples conditioned.
    pub fn len(&self, context_len: usize) -> usize {
        match self {
            Cond::Labels(l) => l.len(),
            Cond::Contexts(c) => c.len() / context_len.max(1),
        }
    }
}

/// One rank's share of a step's batch: x0 [n, C, H, W] flat and each sample's condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub x0: Vec<f32>,
    pub cond: Cond,
}

/// A view of training samples: what a step reads.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    Memory(&'a Dataset),
    Shards(&'a ShardSet, &'a Order),
}

impl<'a> From<&'a Dataset> for Source<'a> {
    fn from(d: &'a Dataset) -> Self {
        Source::Memory(d)
    }
}

impl TrainData {
    pub fn source(&self) -> Source<'_> {
        match self {
            TrainData::Memory(d) => Source::Memory(d),
            TrainData::Shards { set, order } => Source::Shards(set, order),
        }
    }
}

impl Source<'_> {
    /// Samples that training reads (per epoch, for shards).
    pub fn len(&self) -> usize {
        match self {
            Source::Memory(d) => d.len(),
            Source::Shards(_, order) => order.len() as usize,
        }
    }

    /// Values per sample: C·H·W.
    pub fn image_len(&self) -> usize {
        match self {
            Source::Memory(d) => d.image_len(),
            Source::Shards(set, _) => set.sample_len(),
        }
    }

    /// Class names, label order (empty for captions).
    pub fn class_names(&self) -> Vec<String> {
        match self {
            Source::Memory(d) if d.text.is_none() => d.class_names.clone(),
            Source::Shards(set, _) => match &set.kind {
                ShardKind::Classes(names) => names.clone(),
                ShardKind::Captions { .. } => Vec::new(),
            },
            Source::Memory(_) => Vec::new(),
        }
    }

    /// (Lt, D) of the caption contexts, for text-conditioned data.
    pub fn text(&self) -> Option<(usize, usize)> {
        match self {
            Source::Memory(d) => d.text.as_ref().map(|t| (t.tokens, t.dim)),
            Source::Shards(set, _) => match set.kind {
                ShardKind::Captions { tokens, dim } => Some((tokens, dim)),
                ShardKind::Classes(_) => None,
            },
        }
    }

    /// The batch of the step with index `step` (0-based): `b` samples, each dropped to the null
    /// class or the empty prompt with probability `dropout`, drawn from `rng` the same way
    /// whatever the rank; returns samples `lo..hi` (this rank's share).
    pub fn draw(&self, rng: &mut Rng, step: u64, b: usize, dropout: f64, lo: usize, hi: usize) -> Result<Batch> {
        let d = match self {
            Source::Shards(set, order) => return draw_shards(set, order, rng, step, b, dropout, lo..hi),
            Source::Memory(d) => d,
        };
        let n = hi - lo;
        let mut x0 = Vec::with_capacity(n * d.image_len());
        let (mut labels, mut contexts) = (Vec::with_capacity(n), Vec::new());
        for j in 0..b {
            let i = rng.below(d.len());
            let drop = rng.uniform() < dropout;
            if (lo..hi).contains(&j) {
                x0.extend_from_slice(d.image(i));
                match &d.text {
                    None => labels.push(if drop { d.class_names.len() as u32 } else { d.label(i) }),
                    Some(t) => contexts.extend_from_slice(if drop { &t.empty } else { &t.contexts[i * t.len()..(i + 1) * t.len()] }),
                }
            }
        }
        let cond = if d.text.is_some() { Cond::Contexts(contexts) } else { Cond::Labels(labels) };
        Ok(Batch { x0, cond })
    }
}

/// [`Source::draw`] from a shard set: the dropout draws of the whole batch in sample order (the
/// same whatever the rank) and this rank's positions, then its rows read by a few threads at once (the step's compute
/// threads wait for its batch anyway), then the touched shards' pages dropped.
fn draw_shards(set: &ShardSet, order: &Order, rng: &mut Rng, step: u64, b: usize, dropout: f64, mine: std::ops::Range<usize>) -> Result<Batch> {
    let drops: Vec<bool> = (0..b).map(|_| rng.uniform() < dropout).collect();
    let places = order.span(step * b as u64 + mine.start as u64, mine.len());
    let picks: Vec<(usize, usize, bool)> = places.into_iter().zip(&drops[mine]).map(|((shard, row), &drop)| (shard, row, drop)).collect();
    let captions = matches!(set.kind, ShardKind::Captions { .. });
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let per_thread = picks.len().div_ceil(threads).max(1);
    let parts: Vec<Result<(Vec<f32>, Vec<f32>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = picks
            .chunks(per_thread)
            .map(|chunk| {
                s.spawn(move || -> Result<(Vec<f32>, Vec<f32>)> {
                    let (mut x, mut c) = (Vec::with_capacity(chunk.len() * set.sample_len()), Vec::new());
                    for &(shard, row, drop) in chunk {
                        set.read(shard, row, &mut x, (captions && !drop).then_some(&mut c))?;
                        if captions && drop {
                            c.extend_from_slice(&set.empty);
                        }
                    }
                    Ok((x, c))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(mvdit_model::Error::new("a shard-reading thread panicked")))).collect()
    });
    let (mut x0, mut contexts) = (Vec::with_capacity(picks.len() * set.sample_len()), Vec::new());
    for part in parts {
        let (x, c) = part?;
        x0.extend(x);
        contexts.extend(c);
    }
    let mut touched: Vec<usize> = picks.iter().map(|p| p.0).collect();
    touched.sort_unstable();
    touched.dedup();
    set.release(touched);
    let cond = match &set.kind {
        ShardKind::Classes(names) => Cond::Labels(picks.iter().map(|&(s, r, drop)| if drop { names.len() as u32 } else { set.label(s, r) }).collect()),
        ShardKind::Captions { .. } => Cond::Contexts(contexts),
    };
    Ok(Batch { x0, cond })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Text;

    fn text_set() -> Dataset {
        let text = Text { contexts: (0..6).map(|v| v as f32).collect(), tokens: 1, dim: 2, empty: vec![-1.0, -1.0] };
        Dataset::latents(2, 1, vec![0.5, 0.5, 1.5, 1.5, 2.5, 2.5], vec![0; 3], vec!["caption".into()], Some(text)).unwrap()
    }

    #[test]
    fn memory_draws_match_the_labels_stream_and_dropout_gives_the_empty_prompt() {
        let set = text_set();
        let data = Source::Memory(&set);
        assert_eq!(data.text(), Some((1, 2)));
        assert!(data.class_names().is_empty());
        let batch = data.draw(&mut Rng::new(3), 0, 64, 0.25, 0, 64).unwrap();
        let Cond::Contexts(c) = &batch.cond else { panic!("text data gives contexts") };
        assert_eq!(c.len(), 128);
        // Every sample's context is its own (x0 = i + 0.5, context = (2i, 2i + 1)) or the empty one.
        let mut dropped = 0;
        for (x, ctx) in batch.x0.chunks(2).zip(c.chunks(2)) {
            if ctx == [-1.0, -1.0] {
                dropped += 1;
            } else {
                assert_eq!(ctx[0], 2.0 * (x[0] - 0.5), "{x:?} {ctx:?}");
            }
        }
        assert!((4..=30).contains(&dropped), "{dropped} of 64 dropped at 0.25");
        // A rank's share is the same samples as the whole batch's slice.
        let part = data.draw(&mut Rng::new(3), 0, 64, 0.25, 16, 24).unwrap();
        assert_eq!(part.x0, batch.x0[32..48]);
        assert_eq!(part.cond, Cond::Contexts(c[32..48].to_vec()));
    }
}
