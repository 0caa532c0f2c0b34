//! Run-time choice of instruction set for charrnn's own kernels: [`Isa`], [`isa`],
//! [`set_isa`], and the `multiversion!` macro that compiles a kernel once per instruction set.

use super::cpu_features;

/// The instruction sets charrnn's own kernels are compiled for. One binary serves every
/// x86-64: each kernel is compiled three times, and the widest version this CPU runs is chosen
/// at run time ([`isa`]). FMA is used as an exactly rounded operation in all three (an
/// instruction on AVX2 and AVX-512, libm's `fmaf` on the portable path), so they give the same
/// bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Baseline x86-64 (SSE2), or any other architecture.
    Portable,
    /// AVX2 and FMA (x86-64-v3).
    Avx2,
    /// AVX-512 F, BW, DQ, VL (with AVX2 and FMA).
    Avx512,
}

static ISA: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

impl Isa {
    fn code(self) -> u8 {
        match self {
            Isa::Portable => 1,
            Isa::Avx2 => 2,
            Isa::Avx512 => 3,
        }
    }

    /// Every instruction set this CPU runs, narrowest first.
    pub fn available() -> Vec<Isa> {
        let f = cpu_features();
        let mut out = vec![Isa::Portable];
        if f.avx2 {
            out.push(Isa::Avx2);
        }
        if f.avx512 && f.avx2 {
            out.push(Isa::Avx512);
        }
        out
    }
}

impl std::str::FromStr for Isa {
    type Err = String;

    /// `portable`, `avx2` or `avx512`, in any case.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "portable" => Ok(Isa::Portable),
            "avx2" => Ok(Isa::Avx2),
            "avx512" => Ok(Isa::Avx512),
            _ => Err(format!(
                "unknown instruction set {s:?}: use portable, avx2 or avx512"
            )),
        }
    }
}

/// Applies the kernel choices of the environment (`get` reads a variable): `CHARRNN_ISA`
/// (portable, avx2, avx512) for the f32 kernels and `CHARRNN_BF16` (amx, avx512-bf16) for
/// the bf16 ones. Unset, each stays the widest this CPU runs; a value that names no kernel,
/// or one this CPU cannot run, is an error naming the variable.
pub fn kernels_from_env(get: impl Fn(&str) -> Option<String>) -> Result<(), String> {
    if let Some(want) = get("CHARRNN_ISA") {
        want.parse().and_then(set_isa).map_err(|e| {
            format!(
                "invalid CHARRNN_ISA = {want}: {e} (or unset it to use the widest this CPU runs)"
            )
        })?;
    }
    if let Some(want) = get("CHARRNN_BF16") {
        want.to_ascii_lowercase()
            .parse()
            .and_then(super::bf16::set_kernel)
            .map_err(|e| format!("invalid CHARRNN_BF16 = {want}: {e} (or unset it to use the widest this CPU runs)"))?;
    }
    Ok(())
}

/// The instruction set the kernels run with: the widest this CPU supports, unless
/// [`set_isa`] chose another.
#[inline]
pub fn isa() -> Isa {
    match ISA.load(std::sync::atomic::Ordering::Relaxed) {
        1 => Isa::Portable,
        2 => Isa::Avx2,
        3 => Isa::Avx512,
        _ => {
            let best = *Isa::available()
                .last()
                .expect("portable is always available");
            ISA.store(best.code(), std::sync::atomic::Ordering::Relaxed);
            best
        }
    }
}

/// Runs the kernels with `isa` from now on (for tests and comparisons); refuses one this CPU
/// does not support.
pub fn set_isa(isa: Isa) -> Result<(), String> {
    if !Isa::available().contains(&isa) {
        return Err(format!("this CPU cannot run the {isa:?} kernels"));
    }
    ISA.store(isa.code(), std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Defines a kernel compiled for each [`Isa`] and dispatched at run time: the body is written
/// once, inlined into an AVX-512 and an AVX2+FMA version (`#[target_feature]`) and used as is
/// for the portable one. Helpers it calls must be `#[inline(always)]` to be compiled with the
/// wider instructions.
macro_rules! multiversion {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident $(<$($g:ident : $bound:path),*>)? ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)?
        $body:block
    ) => {
        $(#[$attr])*
        $vis fn $name $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
            unsafe fn avx512 $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? {
                body $(::<$($g),*>)? ($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2 $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? {
                body $(::<$($g),*>)? ($($arg),*)
            }
            match $crate::linalg::isa() {
                // SAFETY: `isa()` reports only instruction sets this CPU runs.
                #[cfg(target_arch = "x86_64")]
                $crate::linalg::Isa::Avx512 => unsafe { avx512 $(::<$($g),*>)? ($($arg),*) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                $crate::linalg::Isa::Avx2 => unsafe { avx2 $(::<$($g),*>)? ($($arg),*) },
                _ => body $(::<$($g),*>)? ($($arg),*),
            }
        }
    };
}
pub(crate) use multiversion;
