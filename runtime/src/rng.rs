use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The runtime's seeded generator (ChaCha8, value-stable across platforms).
///
/// candle's CPU generator cannot be seeded, so everything random that must be
/// reproducible (initialisation, later dropout masks and shuffling) draws
/// from this instead. Each parameter gets its own stream, derived from the
/// seed and the parameter's name, so adding a layer to a network does not
/// change how the others are initialised.
#[derive(Debug, Clone)]
pub struct Rng {
    inner: ChaCha8Rng,
}

impl Rng {
    /// A generator for `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self {
            inner: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// A generator for `seed`, on the stream named `name`.
    pub fn stream(seed: u64, name: &str) -> Self {
        let mut inner = ChaCha8Rng::seed_from_u64(seed);
        inner.set_stream(fnv1a(name.as_bytes()));
        Self { inner }
    }

    /// A seed from the operating system's entropy.
    pub fn entropy_seed() -> u64 {
        rand::rng().next_u64()
    }

    /// Uniform in `[0, 1)`, with 24 random bits (every f32 in the range is
    /// equally spaced, as PyTorch's `uniform_`).
    pub fn next_unit_f32(&mut self) -> f32 {
        (self.inner.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// `n` values uniform in `[low, high)`.
    pub fn uniform_vec(&mut self, n: usize, low: f32, high: f32) -> Vec<f32> {
        (0..n)
            .map(|_| low + (high - low) * self.next_unit_f32())
            .collect()
    }

    /// The generator's whole state: seed, stream and position, as 56 bytes
    /// (for checkpoints: restoring it continues the same sequence).
    pub fn state(&self) -> [u8; 56] {
        let mut out = [0u8; 56];
        out[..32].copy_from_slice(&self.inner.get_seed());
        out[32..40].copy_from_slice(&self.inner.get_stream().to_le_bytes());
        out[40..].copy_from_slice(&self.inner.get_word_pos().to_le_bytes());
        out
    }

    /// A generator in the state [`Rng::state`] returned.
    pub fn from_state(state: &[u8; 56]) -> Self {
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&state[..32]);
        let mut inner = ChaCha8Rng::from_seed(seed);
        let mut stream = [0u8; 8];
        stream.copy_from_slice(&state[32..40]);
        inner.set_stream(u64::from_le_bytes(stream));
        let mut pos = [0u8; 16];
        pos.copy_from_slice(&state[40..]);
        inner.set_word_pos(u128::from_le_bytes(pos));
        Self { inner }
    }

    /// `n` values from N(0, std²) (Box-Muller).
    pub fn normal_vec(&mut self, n: usize, std: f32) -> Vec<f32> {
        let mut out = Vec::with_capacity(n + 1);
        while out.len() < n {
            // u1 in (0, 1] so the log is finite.
            let u1 = 1.0 - self.next_unit_f32() as f64;
            let u2 = self.next_unit_f32() as f64;
            let r = (-2.0 * u1.ln()).sqrt();
            let t = std::f64::consts::TAU * u2;
            out.push((r * t.cos()) as f32 * std);
            out.push((r * t.sin()) as f32 * std);
        }
        out.truncate(n);
        out
    }

    /// The next raw 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trip_continues_the_sequence() {
        let mut a = Rng::stream(3, "dropout");
        a.uniform_vec(17, 0.0, 1.0);
        let mut b = Rng::from_state(&a.state());
        assert_eq!(a.uniform_vec(33, 0.0, 1.0), b.uniform_vec(33, 0.0, 1.0));
    }

    #[test]
    fn same_seed_same_values_and_streams_differ() {
        let a = Rng::stream(7, "conv1.weight").uniform_vec(16, -1.0, 1.0);
        let b = Rng::stream(7, "conv1.weight").uniform_vec(16, -1.0, 1.0);
        let c = Rng::stream(7, "conv2.weight").uniform_vec(16, -1.0, 1.0);
        let d = Rng::stream(8, "conv1.weight").uniform_vec(16, -1.0, 1.0);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        assert!(a.iter().all(|v| (-1.0..1.0).contains(v)));
    }
}
