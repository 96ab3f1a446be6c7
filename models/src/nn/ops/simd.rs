//! Runs a kernel compiled for AVX-512, or else for AVX2 + FMA, where the CPU has it: the
//! default x86-64 target only allows SSE2, so plain loops would vectorise to 4 lanes without
//! fused multiply-adds (AMD's Zen 3 and many Intel parts have AVX2 but no AVX-512).


/// The widest instruction set our kernels may use (2 AVX-512, 1 AVX2 + FMA, 0 baseline), from
/// `CIFAR_SIMD=avx2|baseline`: to measure and test the narrower builds on a wider CPU. Only our
/// kernels follow it; the gemm crate picks its own.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn simd_cap() -> u8 {
    static CAP: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    *CAP.get_or_init(|| match std::env::var("CIFAR_SIMD").as_deref() {
        Ok("avx2") => 1,
        Ok("baseline") => 0,
        _ => 2,
    })
}

/// Whether `T` is f32, the type the hand-written SIMD kernels take.
pub fn is_f32<T: 'static>() -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
}

/// `s` as f32 when T is f32, for a hand-written kernel.
pub fn as_f32<T: 'static>(s: &[T]) -> Option<&[f32]> {
    // SAFETY: T is f32 itself, so the cast changes nothing.
    is_f32::<T>().then(|| unsafe { &*(s as *const [T] as *const [f32]) })
}

pub fn as_f32_mut<T: 'static>(s: &mut [T]) -> Option<&mut [f32]> {
    // SAFETY: as above.
    is_f32::<T>().then(|| unsafe { &mut *(s as *mut [T] as *mut [f32]) })
}

/// Inputs and the error measure of the SIMD kernels' unit tests.
#[cfg(test)]
pub mod test_data {
    pub fn fill(len: usize, seed: usize) -> Vec<f32> {
        (0..len).map(|i| ((i * 7 + seed * 13) % 29) as f32 / 29.0 - 0.5).collect()
    }

    /// Largest absolute difference over the largest magnitude of `want`.
    pub fn max_rel(got: &[f32], want: &[f32]) -> f32 {
        let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale
    }
}

/// Whether the AVX-512 builds of the kernels may run here.
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        simd_cap() >= 2 && std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the AVX2 + FMA builds of the kernels may run here.
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        simd_cap() >= 1 && std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `$name`, which runs the `#[inline(always)]` generic function `$body` compiled
/// for AVX-512 when the CPU has it, for AVX2 + FMA when it has those, and as compiled for the
/// baseline otherwise.
macro_rules! multiversion {
    ($vis:vis fn $name:ident<$T:ident>($($arg:ident: $ty:ty),* $(,)?) => $body:ident) => {
        $crate::nn::ops::simd::multiversion!($vis fn $name<$T>($($arg: $ty),*) -> () => $body);
    };
    ($vis:vis fn $name:ident<$T:ident>($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty => $body:ident) => {
        $vis fn $name<$T: $crate::nn::ops::storage::num_like::NumLike>($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn wide<$T: $crate::nn::ops::storage::num_like::NumLike>($($arg: $ty),*) -> $ret {
                    $body::<$T>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2<$T: $crate::nn::ops::storage::num_like::NumLike>($($arg: $ty),*) -> $ret {
                    $body::<$T>($($arg),*)
                }
                if $crate::nn::ops::simd::has_avx512() {
                    // SAFETY: the CPU was just found to support every enabled feature.
                    return unsafe { wide::<$T>($($arg),*) };
                }
                if $crate::nn::ops::simd::has_avx2_fma() {
                    // SAFETY: as above.
                    return unsafe { avx2::<$T>($($arg),*) };
                }
            }
            $body::<$T>($($arg),*)
        }
    };
}
pub(crate) use multiversion;
