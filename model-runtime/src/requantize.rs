//! Re-quantizing a GGUF file to llama.cpp's Q4_K_M mix with candle's quantizers: every matrix is
//! dequantized and quantized again to the type llama.cpp's rules pick for it, norms stay f32 and
//! the metadata is copied.
//!
//! The Q4_K_M rules (llama.cpp's `llama_tensor_get_type`): Q4_K by default; Q6_K for the output
//! projection (the embedding when it is tied) and, in the layers [`uses_more_bits`] picks, for
//! `attn_v` and `ffn_down`. A K-quant needs rows that are a multiple of 256 values; other rows
//! fall back as llama.cpp does (Q4_K to Q5_0, Q6_K to Q8_0).

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;

use crate::gguf::GgufFile;
use crate::gguf_export::ExportError;
use crate::lm::candle_message;

/// `general.file_type` of a Q4_K_M file.
const FILE_TYPE_Q4_K_M: u32 = 15;

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third one in
/// between.
pub fn uses_more_bits(layer: usize, layers: usize) -> bool {
    layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2
}

/// The type of tensor `name` (a matrix of `cols` inputs) in a Q4_K_M file of `layers` blocks;
/// `tied` when the file has no `output.weight`.
pub fn q4_k_m_type(name: &str, cols: usize, layers: usize, tied: bool) -> GgmlDType {
    let layer = name
        .strip_prefix("blk.")
        .and_then(|rest| rest.split_once('.'))
        .and_then(|(n, _)| n.parse::<usize>().ok());
    let wanted = if name == "output.weight" || (tied && name == "token_embd.weight") {
        GgmlDType::Q6K
    } else {
        match layer {
            Some(layer)
                if (name.ends_with(".attn_v.weight") || name.ends_with(".ffn_down.weight"))
                    && uses_more_bits(layer, layers) =>
            {
                GgmlDType::Q6K
            }
            _ => GgmlDType::Q4K,
        }
    };
    if cols.is_multiple_of(256) {
        wanted
    } else if wanted == GgmlDType::Q6K {
        GgmlDType::Q8_0
    } else {
        GgmlDType::Q5_0
    }
}

/// Writes `src` re-quantized to the Q4_K_M mix as `dst`; returns how many tensors of each type
/// it wrote.
pub fn requantize_q4_k_m(
    src: &Path,
    dst: &Path,
) -> Result<std::collections::BTreeMap<String, usize>, ExportError> {
    let mut file = GgufFile::open(src)?;
    let arch = file
        .metadata()
        .opt_string("general.architecture")
        .unwrap_or("")
        .to_owned();
    let layers = file
        .metadata()
        .opt_u64(&format!("{arch}.block_count"))
        .ok_or_else(|| ExportError::Unsupported {
            path: src.to_owned(),
            message: format!("metadata key `{arch}.block_count` is missing"),
        })? as usize;
    let tied = !file.content.tensor_infos.contains_key("output.weight");
    let mut names: Vec<(u64, String)> = file
        .content
        .tensor_infos
        .iter()
        .map(|(name, info)| (info.offset, name.clone()))
        .collect();
    names.sort();
    let mut counts = std::collections::BTreeMap::new();
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len());
    for (_, name) in names {
        let tensor_err = |e: candle_core::Error| ExportError::Tensor {
            path: src.to_owned(),
            message: format!("tensor `{name}`: {}", candle_message(&e)),
        };
        let tensor = file
            .content
            .tensor(&mut file.reader, &name, &Device::Cpu)
            .map_err(tensor_err)?;
        let dims = tensor.shape().dims().to_vec();
        let out = if dims.len() < 2 {
            tensor
        } else {
            let dtype = q4_k_m_type(&name, dims[dims.len() - 1], layers, tied);
            let values = tensor.dequantize(&Device::Cpu).map_err(tensor_err)?;
            QTensor::quantize(&values, dtype).map_err(tensor_err)?
        };
        *counts.entry(format!("{:?}", out.dtype())).or_insert(0) += 1;
        tensors.push((name, out));
    }
    let mut metadata: Vec<(String, Value)> = file
        .content
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    metadata.retain(|(k, _)| k != "general.file_type");
    metadata.push(("general.file_type".into(), Value::U32(FILE_TYPE_Q4_K_M)));
    metadata.sort_by(|a, b| a.0.cmp(&b.0));
    let write_err = |message: String| ExportError::Tensor {
        path: dst.to_owned(),
        message,
    };
    let out = std::fs::File::create(dst).map_err(|source| ExportError::Io {
        path: dst.to_owned(),
        source,
    })?;
    let mut out = std::io::BufWriter::new(out);
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    gguf_file::write(&mut out, &md, &ts).map_err(|e| write_err(candle_message(&e)))?;
    std::io::Write::flush(&mut out).map_err(|source| ExportError::Io {
        path: dst.to_owned(),
        source,
    })?;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_follows_llama_cpps_rules() {
        // 30 layers: the first 3, the last 4 and every third from layer 5 get more bits.
        let more: Vec<usize> = (0..30).filter(|&l| uses_more_bits(l, 30)).collect();
        assert_eq!(more, [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]);
        assert_eq!(
            q4_k_m_type("blk.3.ffn_down.weight", 1536, 30, true),
            GgmlDType::Q4K
        );
        assert_eq!(
            q4_k_m_type("blk.5.ffn_down.weight", 1536, 30, true),
            GgmlDType::Q6K
        );
        // Rows of 576 values cannot hold K-quant blocks.
        assert_eq!(
            q4_k_m_type("blk.3.attn_q.weight", 576, 30, true),
            GgmlDType::Q5_0
        );
        assert_eq!(
            q4_k_m_type("blk.0.attn_v.weight", 576, 30, true),
            GgmlDType::Q8_0
        );
        assert_eq!(
            q4_k_m_type("token_embd.weight", 576, 30, true),
            GgmlDType::Q8_0
        );
        assert_eq!(
            q4_k_m_type("token_embd.weight", 512, 30, false),
            GgmlDType::Q4K
        );
        assert_eq!(q4_k_m_type("output.weight", 512, 30, false), GgmlDType::Q6K);
    }
}
