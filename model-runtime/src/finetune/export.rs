//! The output layer a model starts training from, and the tuned model or its LoRA adapter
//! written as GGUF files.

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

use crate::gguf::GgufFile;
use crate::gguf_export::ExportError;
use crate::lm::candle_message;

/// The tensor the output layer is stored in.
const OUTPUT: &str = "output.weight";
/// The token embeddings, which tied models use as their output layer.
const EMBEDDINGS: &str = "token_embd.weight";

fn tensor_error(path: &Path, name: &str, error: &candle_core::Error) -> ExportError {
    ExportError::Tensor {
        path: path.to_owned(),
        message: format!("tensor `{name}`: {}", candle_message(error)),
    }
}

/// The output layer of the GGUF model at `path` as f32 (vocabulary × hidden size): its
/// `output.weight`, or the token embeddings when the output layer is tied to them.
pub fn initial_head(path: &Path) -> Result<Tensor, ExportError> {
    let mut file = GgufFile::open(path)?;
    let name = if file.content.tensor_infos.contains_key(OUTPUT) {
        OUTPUT
    } else {
        EMBEDDINGS
    };
    file.content
        .tensor(&mut file.reader, name, &Device::Cpu)
        .and_then(|t| t.dequantize(&Device::Cpu))
        .and_then(|t| t.to_dtype(DType::F32))
        .map_err(|e| tensor_error(path, name, &e))
}

/// The format of a trained matrix in a tuned file: 8-bit blocks, close to f32 and run by the
/// fast backend's kernels. Vectors (norms) are written as f32.
const MATRIX_FORMAT: GgmlDType = GgmlDType::Q8_0;

/// Writes `dst`: the GGUF model `src` with `head` (vocabulary × hidden size) as its output layer,
/// and the string `metadata` added (see [`write_with_tensors`]).
pub fn write_with_output_head(
    src: &Path,
    head: &Tensor,
    metadata: &[(&str, &str)],
    dst: &Path,
) -> Result<(), ExportError> {
    let file = GgufFile::open(src)?;
    let embeddings = file
        .content
        .tensor_infos
        .get(EMBEDDINGS)
        .map(|info| info.shape.dims().to_vec());
    if embeddings.as_deref() != Some(head.dims()) {
        return Err(ExportError::Unsupported {
            path: src.to_owned(),
            message: format!(
                "the trained output layer is {:?} but the token embeddings are {:?}",
                head.dims(),
                embeddings.unwrap_or_default()
            ),
        });
    }
    write_with_tensors(src, &[(OUTPUT.to_owned(), head.clone())], metadata, dst)
}

/// Writes `dst`: the GGUF model `src` with the tensors of `replaced` put in by name (matrices
/// quantized to Q8_0, vectors as f32; a name the file lacks is added) and the string `metadata`
/// added (replacing keys of the same name). Every other tensor is copied as stored.
pub fn write_with_tensors(
    src: &Path,
    replaced: &[(String, Tensor)],
    metadata: &[(&str, &str)],
    dst: &Path,
) -> Result<(), ExportError> {
    let mut file = GgufFile::open(src)?;
    let replaces = |name: &str| replaced.iter().any(|(n, _)| n == name);
    let mut names: Vec<(u64, String)> = file
        .content
        .tensor_infos
        .iter()
        .filter(|(name, _)| !replaces(name))
        .map(|(name, info)| (info.offset, name.clone()))
        .collect();
    names.sort();
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len() + replaced.len());
    for (_, name) in names {
        let tensor = file
            .content
            .tensor(&mut file.reader, &name, &Device::Cpu)
            .map_err(|e| tensor_error(src, &name, &e))?;
        tensors.push((name, tensor));
    }
    for (name, tensor) in replaced {
        if let Some(info) = file.content.tensor_infos.get(name) {
            if info.shape.dims() != tensor.dims() {
                return Err(ExportError::Unsupported {
                    path: src.to_owned(),
                    message: format!(
                        "the trained `{name}` is {:?} but the model's is {:?}",
                        tensor.dims(),
                        info.shape.dims()
                    ),
                });
            }
        }
        let format = if tensor.rank() >= 2 {
            MATRIX_FORMAT
        } else {
            GgmlDType::F32
        };
        let quantized = tensor
            .to_dtype(DType::F32)
            .and_then(|t| QTensor::quantize(&t, format))
            .map_err(|e| tensor_error(dst, name, &e))?;
        tensors.push((name.clone(), quantized));
    }
    let mut entries: Vec<(String, Value)> = file
        .content
        .metadata
        .iter()
        .filter(|(key, _)| !metadata.iter().any(|(k, _)| k == key))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    entries.extend(
        metadata
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string()))),
    );
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    write_gguf(&entries, &tensors, dst)
}

/// Writes `dst`: a LoRA adapter for the GGUF model `base` in llama.cpp's adapter layout
/// (`general.type` "adapter", `adapter.type` "lora", `adapter.lora.alpha`, the base's
/// architecture) holding `tensors` as f16 (see [`crate::finetune::TrainableLlama::adapter_tensors`])
/// and the string `metadata`. The fast backend applies it at run time
/// ([`crate::fast::LoraAdapter`]), which keeps `A` in Q8_0 and `B` in bfloat16: f16 loses nothing
/// it would keep and halves the file (4.9 MB instead of 9.8 MB for rank 8 on every projection of
/// SmolLM2-135M), small enough to ship beside the workflows.
pub fn write_lora_adapter(
    base: &Path,
    tensors: &[(String, Tensor)],
    alpha: f32,
    metadata: &[(&str, &str)],
    dst: &Path,
) -> Result<(), ExportError> {
    let file = GgufFile::open(base)?;
    let architecture = file
        .content
        .metadata
        .get("general.architecture")
        .cloned()
        .ok_or_else(|| ExportError::Unsupported {
            path: base.to_owned(),
            message: "the model has no `general.architecture`".into(),
        })?;
    let text = |v: &str| Value::String(v.to_owned());
    let mut entries = vec![
        ("general.architecture".to_owned(), architecture),
        ("general.type".to_owned(), text("adapter")),
        ("adapter.type".to_owned(), text("lora")),
        ("adapter.lora.alpha".to_owned(), Value::F32(alpha)),
    ];
    entries.extend(metadata.iter().map(|(k, v)| (k.to_string(), text(v))));
    let quantized = tensors
        .iter()
        .map(|(name, tensor)| {
            tensor
                .to_dtype(DType::F32)
                .and_then(|t| QTensor::quantize(&t, GgmlDType::F16))
                .map(|q| (name.clone(), q))
                .map_err(|e| tensor_error(dst, name, &e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    write_gguf(&entries, &quantized, dst)
}

/// Writes a GGUF file of `metadata` and `tensors` to `dst`.
fn write_gguf(
    metadata: &[(String, Value)],
    tensors: &[(String, QTensor)],
    dst: &Path,
) -> Result<(), ExportError> {
    let io_error = |source| ExportError::Io {
        path: dst.to_owned(),
        source,
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(dst).map_err(io_error)?);
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    gguf_file::write(&mut out, &md, &ts).map_err(|e| ExportError::Tensor {
        path: dst.to_owned(),
        message: candle_message(&e),
    })?;
    std::io::Write::flush(&mut out).map_err(io_error)
}
