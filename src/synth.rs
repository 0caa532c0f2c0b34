//! Synthetic training text with a known optimum.
//!
//! The built-in corpus is drawn from a random order-2 Markov chain rather than
//! taken from any real text, for two reasons: no third-party text has to ship
//! with the crate, and the chain's entropy rate can be computed exactly, so a
//! test can check that a trained model's loss approaches the true optimum
//! instead of merely "going down".
//!
//! The chain is built so that it is irreducible and aperiodic *by
//! construction* (see [`MarkovSource::new`]); the exact entropy rate therefore
//! exists, is unique, and equals the long-run mean code length of generated
//! text.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Number of characters in the built-in corpus.
pub const BUILTIN_CHARS: usize = 250_000;

/// Seed of the chain behind [`MarkovSource::builtin`]. Changing it changes
/// the corpus and its entropy rate, so any recorded baselines go stale.
const BUILTIN_CHAIN_SEED: u64 = 0x00C0_FFEE_5EED_0002;

/// Seed of the text drawn from the built-in chain for [`builtin_corpus`].
const BUILTIN_TEXT_SEED: u64 = 0x7E47_2024_0000_0001;

/// The letters of the alphabet. Five vowels plus common consonants make the
/// vowel/consonant alternation below produce pronounceable-looking words.
const LETTERS: &str = "abdeghilmnorstuw";
const VOWELS: &str = "aeiou";

/// A seeded random order-2 Markov source over a small alphabet.
///
/// States are pairs of characters; each pair has only a handful of possible
/// successors, which keeps the entropy rate far below `ln(alphabet len)` so a
/// small RNN has real structure to learn.
#[derive(Clone, Debug)]
pub struct MarkovSource {
    alphabet: Vec<char>,
    /// Dense `P(c | a, b)` at `(a * n + b) * n + c`, so `prob` is O(1) and
    /// exact (the same `f64`s the sampler's tables are built from).
    probs: Vec<f64>,
    /// Per context, the successors and their cumulative probabilities:
    /// entries `succ_start[ctx]..succ_start[ctx + 1]` of `succ` / `cdf`.
    /// Sparse tables keep sampling to a scan of at most a few entries.
    succ_start: Vec<usize>,
    succ: Vec<u8>,
    cdf: Vec<f64>,
    /// Stationary distribution of the pair chain, indexed `a * n + b`.
    /// Computed once because both generation and the entropy rate need it.
    stationary: Vec<f64>,
}

/// Character classes that drive the word-like shape of the chain.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Vowel,
    Consonant,
    /// Space or newline: a word boundary.
    Gap,
    Comma,
    Period,
}

fn class_of(c: char) -> Class {
    match c {
        ' ' | '\n' => Class::Gap,
        ',' => Class::Comma,
        '.' => Class::Period,
        c if VOWELS.contains(c) => Class::Vowel,
        _ => Class::Consonant,
    }
}

/// Uniform in `[0, 1)` from the top 53 bits. Done by hand rather than through
/// `rand`'s distributions so the chain and text depend only on the ChaCha8
/// stream, which is fixed by its spec, not on `rand`'s sampling algorithms,
/// which may change between versions.
fn unit_f64(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Integer in `0..n` by multiply-high (same portability reason as
/// [`unit_f64`]; the bias of at most `n / 2^64` is irrelevant here).
fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    ((rng.next_u64() as u128 * n as u128) >> 64) as usize
}

/// Positive random weight. Exponential weights make each context's
/// distribution a Dirichlet(1) draw, i.e. uniform over the simplex, which
/// gives a healthy mix of peaked and flat contexts; the offset keeps every
/// listed successor genuinely possible.
fn weight(rng: &mut ChaCha8Rng) -> f64 {
    0.05 - (1.0 - unit_f64(rng)).ln()
}

/// Appends up to `k - have` distinct letters from `pool` that are not yet in
/// `out` (partial Fisher-Yates on a copy of the pool).
fn pick_distinct(rng: &mut ChaCha8Rng, pool: &[usize], k: usize, out: &mut Vec<usize>) {
    let mut pool: Vec<usize> = pool.iter().copied().filter(|i| !out.contains(i)).collect();
    while out.len() < k && !pool.is_empty() {
        let j = below(rng, pool.len());
        out.push(pool.swap_remove(j));
    }
}

impl MarkovSource {
    /// Builds the chain from `seed` (same seed => same chain, bit for bit).
    ///
    /// Every successor list is random except for a few forced entries that
    /// guarantee the chain is irreducible and aperiodic for *every* seed:
    ///
    /// * every context ending in a letter may be followed by a space;
    /// * after `(letter i, gap)` the next letter may be letter `i + 1`
    ///   (cyclically), so once any letter occurs, every letter can occur,
    ///   and the pair `(first letter, ' ')` is reachable from every state:
    ///   hence exactly one closed class;
    /// * `(' ', 'e')` may be followed by `l`, and `('e', 'l')` by `l`: from
    ///   `('e', 'l')` the pair `('l', ' ')` is reachable in 1 step (`" "`)
    ///   and in 2 steps (`"l "`), so that class has cycles of coprime
    ///   lengths, i.e. it is aperiodic;
    /// * `('l', 'l')` may be followed by `.` and `('e', 'l')` by `,`, so
    ///   punctuation and newlines (which only follow `.`) occur for every
    ///   seed.
    pub fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut alphabet: Vec<char> = LETTERS.chars().chain([' ', '\n', ',', '.']).collect();
        alphabet.sort_unstable();
        let n = alphabet.len();
        let idx = |c: char| {
            alphabet
                .iter()
                .position(|&x| x == c)
                .expect("char in alphabet")
        };
        let classes: Vec<Class> = alphabet.iter().map(|&c| class_of(c)).collect();
        let letters: Vec<usize> = (0..n)
            .filter(|&i| matches!(classes[i], Class::Vowel | Class::Consonant))
            .collect();
        let vowels: Vec<usize> = letters
            .iter()
            .copied()
            .filter(|&i| classes[i] == Class::Vowel)
            .collect();
        let consonants: Vec<usize> = letters
            .iter()
            .copied()
            .filter(|&i| classes[i] == Class::Consonant)
            .collect();
        let onset: Vec<usize> = letters
            .iter()
            .copied()
            .filter(|&i| classes[i] == Class::Vowel || "hlr".contains(alphabet[i]))
            .collect();
        let (space, newline, comma, period) = (idx(' '), idx('\n'), idx(','), idx('.'));
        let (e, l) = (idx('e'), idx('l'));

        let mut probs = vec![0.0; n * n * n];
        let mut succ_start = Vec::with_capacity(n * n + 1);
        let mut succ = Vec::new();
        let mut cdf = Vec::new();

        // Contexts are visited in a fixed order and every one consumes the
        // RNG (even ones that are unreachable), so the chain is a pure
        // function of the seed.
        for a in 0..n {
            for b in 0..n {
                let mut entries: Vec<(usize, f64)> = Vec::new();
                match classes[b] {
                    Class::Gap => {
                        // Word start: letters only, so no empty words,
                        // double spaces or leading punctuation.
                        let mut chosen = Vec::new();
                        if let Some(pos) = letters.iter().position(|&x| x == a) {
                            chosen.push(letters[(pos + 1) % letters.len()]);
                        }
                        let k = 3 + below(&mut rng, 3);
                        pick_distinct(&mut rng, &letters, k, &mut chosen);
                        entries.extend(chosen.into_iter().map(|c| (c, weight(&mut rng))));
                    }
                    Class::Vowel | Class::Consonant => {
                        // Alternate vowels and consonants loosely: after a
                        // vowel a consonant, after two consonants a vowel,
                        // and a word-initial consonant takes a vowel or a
                        // liquid ("bl", "th") rather than a harsh cluster.
                        let pool: &[usize] = match (classes[a], classes[b]) {
                            (_, Class::Vowel) => &consonants,
                            (Class::Consonant, Class::Consonant) => &vowels,
                            (Class::Gap, Class::Consonant) => &onset,
                            _ => &letters,
                        };
                        let mut chosen = Vec::new();
                        if (a, b) == (space, e) || (a, b) == (e, l) {
                            chosen.push(l);
                        }
                        let k = chosen.len() + 2 + below(&mut rng, 2);
                        pick_distinct(&mut rng, pool, k, &mut chosen);
                        entries.extend(chosen.into_iter().map(|c| (c, weight(&mut rng))));
                        // One-letter words are rare in text; damp the space
                        // weight right after a word boundary.
                        let damp = if classes[a] == Class::Gap { 0.2 } else { 1.0 };
                        entries.push((space, damp * weight(&mut rng)));
                        let want_punct = unit_f64(&mut rng) < 0.3 && classes[a] != Class::Gap;
                        let mut punct = Vec::new();
                        if want_punct {
                            punct.push(if unit_f64(&mut rng) < 0.65 {
                                period
                            } else {
                                comma
                            });
                        }
                        if (a, b) == (l, l) && !punct.contains(&period) {
                            punct.push(period);
                        }
                        if (a, b) == (e, l) && !punct.contains(&comma) {
                            punct.push(comma);
                        }
                        for p in punct {
                            // Punctuation is rarer than letters or spaces.
                            entries.push((p, 0.25 * weight(&mut rng)));
                        }
                    }
                    Class::Comma => entries.push((space, 1.0)),
                    Class::Period => {
                        // Sentences end the line now and then.
                        let nl = 0.15 + 0.3 * unit_f64(&mut rng);
                        entries.push((space, 1.0 - nl));
                        entries.push((newline, nl));
                    }
                }
                entries.sort_unstable_by_key(|&(c, _)| c);
                let total: f64 = entries.iter().map(|&(_, w)| w).sum();
                succ_start.push(succ.len());
                let mut acc = 0.0;
                for (c, w) in entries {
                    let p = w / total;
                    probs[(a * n + b) * n + c] = p;
                    acc += p;
                    succ.push(c as u8);
                    cdf.push(acc);
                }
                // Guard against rounding so a uniform draw in [0, 1) always
                // lands on some successor.
                *cdf.last_mut().expect("every context has a successor") = 1.0;
            }
        }
        succ_start.push(succ.len());

        let mut source = MarkovSource {
            alphabet,
            probs,
            succ_start,
            succ,
            cdf,
            stationary: Vec::new(),
        };
        source.stationary = source.compute_stationary();
        source
    }

    /// The chain used for the built-in corpus (a fixed seed constant).
    pub fn builtin() -> Self {
        Self::new(BUILTIN_CHAIN_SEED)
    }

    /// The alphabet, sorted by code point.
    pub fn alphabet(&self) -> &[char] {
        &self.alphabet
    }

    /// P(next = c | previous two = (a, b)), by alphabet indices.
    ///
    /// # Panics
    /// If any index is not below `alphabet().len()`.
    pub fn prob(&self, a: usize, b: usize, c: usize) -> f64 {
        let n = self.alphabet.len();
        assert!(a < n && b < n && c < n, "alphabet index out of range");
        self.probs[(a * n + b) * n + c]
    }

    /// Exact entropy rate in nats/char: sum over contexts of pi(ctx) *
    /// H(P(.|ctx)), with pi the stationary distribution of the pair chain
    /// (power iteration to convergence, ~1e-13).
    ///
    /// This is the lowest achievable mean cross-entropy of any predictor of
    /// the chain's text, which is what a model's per-char loss approaches.
    pub fn entropy_rate_nats(&self) -> f64 {
        let n = self.alphabet.len();
        (0..n * n)
            .map(|ctx| {
                let h: f64 = self.successors(ctx).map(|(_, p)| -p * p.ln()).sum();
                self.stationary[ctx] * h
            })
            .sum()
    }

    /// Generates `len` characters, deterministic in (chain, seed): the first `len` of
    /// [`MarkovSource::chars`].
    pub fn generate(&self, len: usize, seed: u64) -> String {
        self.chars(seed).take(len).collect()
    }

    /// The endless text of this chain for `seed`. Starts from a context drawn from the
    /// stationary distribution, so the text is stationary: the first two characters are that
    /// initial context itself, so every position of the output, the first included, has the
    /// stationary marginal.
    pub fn chars(&self, seed: u64) -> MarkovChars<'_> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let u = unit_f64(&mut rng);
        let mut acc = 0.0;
        // Fall back to the last state with mass if rounding leaves `u`
        // above the accumulated total.
        let mut ctx = self.stationary.iter().rposition(|&p| p > 0.0).unwrap_or(0);
        for (i, &p) in self.stationary.iter().enumerate() {
            acc += p;
            if u < acc {
                ctx = i;
                break;
            }
        }
        MarkovChars {
            src: self,
            rng,
            ctx,
            emitted: 0,
        }
    }

    /// Successors of pair-context `ctx = a * n + b` with their probabilities.
    fn successors(&self, ctx: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let n = self.alphabet.len();
        let (lo, hi) = (self.succ_start[ctx], self.succ_start[ctx + 1]);
        self.succ[lo..hi]
            .iter()
            .map(move |&c| (c as usize, self.probs[ctx * n + c as usize]))
    }

    /// Stationary distribution of the pair chain by power iteration from
    /// the uniform distribution over all pairs. Unreachable pairs drain to
    /// zero; uniqueness and convergence follow from the single aperiodic
    /// closed class guaranteed in [`MarkovSource::new`].
    fn compute_stationary(&self) -> Vec<f64> {
        let n = self.alphabet.len();
        let m = n * n;
        let mut pi = vec![1.0 / m as f64; m];
        let mut next = vec![0.0; m];
        for _ in 0..1_000_000 {
            next.iter_mut().for_each(|x| *x = 0.0);
            for (ctx, &mass) in pi.iter().enumerate() {
                if mass == 0.0 {
                    continue;
                }
                let b = ctx % n;
                for (c, p) in self.successors(ctx) {
                    next[b * n + c] += mass * p;
                }
            }
            // Renormalise so rounding drift cannot accumulate over many
            // iterations.
            let total: f64 = next.iter().sum();
            next.iter_mut().for_each(|x| *x /= total);
            let diff: f64 = pi.iter().zip(&next).map(|(x, y)| (x - y).abs()).sum();
            std::mem::swap(&mut pi, &mut next);
            // Stop once an iteration no longer moves pi measurably; L1
            // change near 1e-15 is at the level of f64 rounding for 400
            // entries summing to 1.
            if diff < 1e-15 {
                break;
            }
        }
        pi
    }
}

/// The characters of a [`MarkovSource`], drawn one at a time ([`MarkovSource::chars`]).
pub struct MarkovChars<'a> {
    src: &'a MarkovSource,
    rng: ChaCha8Rng,
    /// The current pair context, a·n + b.
    ctx: usize,
    /// Characters emitted so far, counted up to 2 (the initial context's two).
    emitted: u8,
}

impl Iterator for MarkovChars<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        let src = self.src;
        let n = src.alphabet.len();
        if self.emitted < 2 {
            let c = if self.emitted == 0 {
                self.ctx / n
            } else {
                self.ctx % n
            };
            self.emitted += 1;
            return Some(src.alphabet[c]);
        }
        let u = unit_f64(&mut self.rng);
        let (lo, hi) = (src.succ_start[self.ctx], src.succ_start[self.ctx + 1]);
        let mut j = lo;
        while j + 1 < hi && src.cdf[j] <= u {
            j += 1;
        }
        let c = src.succ[j] as usize;
        self.ctx = (self.ctx % n) * n + c;
        Some(src.alphabet[c])
    }
}

/// The built-in default corpus: `MarkovSource::builtin().generate(BUILTIN_CHARS, <fixed seed>)`.
pub fn builtin_corpus() -> String {
    MarkovSource::builtin().generate(BUILTIN_CHARS, BUILTIN_TEXT_SEED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_of(src: &MarkovSource, c: char) -> usize {
        src.alphabet().iter().position(|&x| x == c).unwrap()
    }

    #[test]
    fn alphabet_is_sorted_small_and_texty() {
        let src = MarkovSource::builtin();
        let a = src.alphabet();
        assert!((16..=24).contains(&a.len()), "alphabet len {}", a.len());
        assert!(a.windows(2).all(|w| w[0] < w[1]), "not strictly sorted");
        for c in [' ', '\n', '.', ','] {
            assert!(a.contains(&c), "missing {c:?}");
        }
    }

    #[test]
    fn probabilities_are_distributions() {
        for seed in [0, 1, 2, 42, BUILTIN_CHAIN_SEED] {
            let src = MarkovSource::new(seed);
            let n = src.alphabet().len();
            for a in 0..n {
                for b in 0..n {
                    let mut sum = 0.0;
                    let mut support = 0;
                    for c in 0..n {
                        let p = src.prob(a, b, c);
                        assert!(p >= 0.0 && p.is_finite(), "P({c}|{a},{b}) = {p}");
                        sum += p;
                        support += usize::from(p > 0.0);
                    }
                    assert!((sum - 1.0).abs() < 1e-12, "context ({a},{b}) sums to {sum}");
                    assert!(support <= 7, "context ({a},{b}) has {support} successors");
                }
            }
        }
    }

    #[test]
    fn stationary_is_fixed_point_for_many_seeds() {
        // Irreducibility and aperiodicity are argued in `new`; if either
        // failed for some seed, power iteration would stop early at a
        // non-fixed point (or oscillate) and this would catch it.
        for seed in 0..20u64 {
            let src = MarkovSource::new(seed);
            let n = src.alphabet().len();
            let pi = &src.stationary;
            let total: f64 = pi.iter().sum();
            assert!((total - 1.0).abs() < 1e-12, "seed {seed}: sums to {total}");
            assert!(pi.iter().all(|&x| x >= 0.0));
            let mut next = vec![0.0; n * n];
            for a in 0..n {
                for b in 0..n {
                    for c in 0..n {
                        next[b * n + c] += pi[a * n + b] * src.prob(a, b, c);
                    }
                }
            }
            let err = pi
                .iter()
                .zip(&next)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-12, "seed {seed}: |pi P - pi|_inf = {err}");
            // Every character must have positive stationary frequency: the
            // forced transitions promise all letters, space, punctuation and
            // newline occur for every seed.
            for c in 0..n {
                let marginal: f64 = (0..n).map(|a| pi[a * n + c]).sum();
                assert!(marginal > 1e-6, "seed {seed}: char {c} has mass {marginal}");
            }
        }
    }

    #[test]
    fn entropy_rate_matches_empirical_code_length() {
        // The reference is computed from the chain itself: the mean of
        // -ln P(x_t | x_{t-2}, x_{t-1}) over a long stationary sample
        // converges to the entropy rate (ergodic theorem), independently of
        // the stationary vector used by `entropy_rate_nats`.
        let src = MarkovSource::builtin();
        let text: Vec<usize> = src
            .generate(2_000_000, 12345)
            .chars()
            .map(|c| index_of(&src, c))
            .collect();
        let nll: f64 = text
            .windows(3)
            .map(|w| -src.prob(w[0], w[1], w[2]).ln())
            .sum::<f64>()
            / (text.len() - 2) as f64;
        let h = src.entropy_rate_nats();
        assert!(
            ((nll - h) / h).abs() < 0.01,
            "empirical {nll} vs exact {h} nats/char"
        );
    }

    #[test]
    fn generated_text_uses_only_possible_transitions() {
        let src = MarkovSource::new(7);
        let text: Vec<usize> = src
            .generate(50_000, 3)
            .chars()
            .map(|c| index_of(&src, c))
            .collect();
        assert_eq!(text.len(), 50_000);
        assert!(text.windows(3).all(|w| src.prob(w[0], w[1], w[2]) > 0.0));
        assert_eq!(src.generate(0, 1), "");
        assert_eq!(src.generate(1, 1).chars().count(), 1);
    }

    #[test]
    fn seeds_are_deterministic_and_distinct() {
        let (x, y) = (MarkovSource::new(99), MarkovSource::new(99));
        assert_eq!(x.alphabet(), y.alphabet());
        let bits = |s: &MarkovSource| s.probs.iter().map(|p| p.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&x), bits(&y));
        assert_eq!(x.generate(10_000, 5), y.generate(10_000, 5));
        assert_eq!(
            x.entropy_rate_nats().to_bits(),
            y.entropy_rate_nats().to_bits()
        );
        assert_ne!(x.generate(10_000, 5), x.generate(10_000, 6));
        let z = MarkovSource::new(100);
        assert_ne!(bits(&x), bits(&z));
        assert_ne!(x.generate(10_000, 5), z.generate(10_000, 5));
        assert_eq!(builtin_corpus(), builtin_corpus());
    }

    #[test]
    fn builtin_entropy_rate_is_learnable_but_nontrivial() {
        let src = MarkovSource::builtin();
        let h = src.entropy_rate_nats();
        let uniform = (src.alphabet().len() as f64).ln();
        assert!((0.8..1.8).contains(&h), "entropy rate {h}");
        assert!(h < 0.6 * uniform, "entropy rate {h} vs ln|A| = {uniform}");
    }

    #[test]
    fn builtin_corpus_looks_like_text() {
        let text = builtin_corpus();
        assert_eq!(text.chars().count(), BUILTIN_CHARS);
        assert!(!text.contains("  "), "double space");
        assert!(text.contains(".\n"), "no line breaks");
        assert!(text.contains(", "), "no commas");
        let words = text.split_whitespace().count();
        let mean_word = BUILTIN_CHARS as f64 / words as f64;
        assert!(
            (3.0..9.0).contains(&mean_word),
            "mean word length {mean_word}"
        );
    }
}
