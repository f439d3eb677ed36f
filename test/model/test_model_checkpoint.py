"""Checkpoint files: formats, wrapper, hash prefix, truncation, unsafe pickles, wrong variants, strictness."""

import hashlib
import os
import re
import shutil

import pytest
import torch

from dpt_ros.model import (
    DPT,
    CheckpointError,
    describe_state_dict,
    get_variant,
    load_engine,
    load_state_dict_into,
    matching_variants,
    official_to_hf,
    read_state_dict,
    verify_sha256_prefix,
)
from dpt_ros.model.checkpoint import load_checkpoint
from dpt_ros.model.reference import random_state_dict

X = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def tiny_sd():
    return random_state_dict("dpt_tiny", seed=11)


@pytest.fixture(scope="module")
def tiny_ref(tiny_sd):
    m = DPT("dpt_tiny")
    m.load_state_dict(tiny_sd)
    return load_engine_from_model(m).run(X)["inverse_depth"]


def load_engine_from_model(m):
    from dpt_ros.model import Engine

    return Engine(m.eval())


def with_hash_name(path, stem):
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    new = path.with_name(f"{stem}-{digest[:8]}{path.suffix}")
    path.rename(new)
    return new


def official_file(tmp_path, sd, name="dpt_tiny.pt", wrapper=True):
    full = dict(sd)
    # the official files also hold the timm ViT's ImageNet classifier (unused by DPT)
    full["pretrained.model.head.weight"] = torch.zeros(1000, 192)
    full["pretrained.model.head.bias"] = torch.zeros(1000)
    obj = {"model": full, "optimizer": {"state": {0: {"step": torch.tensor(3.0)}},
                                        "param_groups": [{"lr": 1e-5, "betas": (0.9, 0.999), "params": [0]}]}} \
        if wrapper else full
    p = tmp_path / name
    torch.save(obj, p)
    return p


def test_official_wrapper_file_with_hash(tmp_path, tiny_sd, tiny_ref):
    p = with_hash_name(official_file(tmp_path, tiny_sd, "x.pt"), "dpt_tiny-midas")
    assert verify_sha256_prefix(p) == p.stem.rsplit("-", 1)[1]
    e = load_engine("dpt_tiny", p)
    assert e.random_weights is False
    assert torch.equal(e.run(X)["inverse_depth"], tiny_ref)
    report = e.model.load_report
    assert report.source_format == "official"
    assert report.dropped == ["pretrained.model.head.weight", "pretrained.model.head.bias"]


def test_plain_state_dict_round_trip_strict(tmp_path, tiny_sd, tiny_ref):
    """An official-named state dict saved from our model loads back strictly with the same outputs."""
    m = DPT("dpt_tiny")
    m.load_state_dict(tiny_sd)
    p = tmp_path / "roundtrip.pth"
    torch.save(m.state_dict(), p)
    loaded = load_checkpoint(p, "dpt_tiny")
    assert loaded.state_dict().keys() == m.state_dict().keys()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in m.state_dict().items())
    assert not loaded.load_report.dropped
    assert torch.equal(load_engine_from_model(loaded).run(X)["inverse_depth"], tiny_ref)


@pytest.mark.parametrize("prefix", ["module.", "model.", "model.module.", "net.", "dpt.", "depth_net.module."])
def test_training_wrapper_prefixes_are_stripped(tmp_path, tiny_sd, tiny_ref, prefix):
    """DataParallel ("module.") and a training module's attribute ("model.", e.g. PyTorch Lightning's
    {"state_dict": ..., "epoch": ...}) prefix every key; the weights load as if saved bare. So do those of a module
    keeping the DPT under another name ("net.", "dpt." before official names: "not a DPT checkpoint" before)."""
    p = tmp_path / "finetuned.ckpt"
    torch.save({"state_dict": {prefix + k: v for k, v in tiny_sd.items()}, "epoch": 3, "global_step": 1200}, p)
    assert torch.equal(load_engine("dpt_tiny", p).run(X)["inverse_depth"], tiny_ref)
    # the load report says what was taken off (the node's load line and weights --verify say it)
    assert load_checkpoint(p, "dpt_tiny").load_report.conversions() == \
        f"converted on load: taken from ['state_dict'], prefix {prefix!r} removed"


def test_the_load_report_says_what_the_file_held_that_was_converted(tmp_path, tiny_sd):
    """fp16 / bf16 tensors cast to fp32, a wrapper, a prefix: the load report says which (before: nothing, so a user
    could not tell a half-precision or wrapped file from a plain one); a plain file and the official {"model",
    "optimizer"} layout have nothing to say."""
    from safetensors.torch import save_file

    half = {k: v.half() for k, v in tiny_sd.items()}
    half["pretrained.model.cls_token"] = tiny_sd["pretrained.model.cls_token"].bfloat16()
    torch.save({"model_state_dict": {"module." + k: v for k, v in half.items()}, "epoch": 9}, tmp_path / "h.pt")
    rep = load_checkpoint(tmp_path / "h.pt", "dpt_tiny").load_report
    assert rep.conversions() == (f"converted on load: taken from ['model_state_dict'], prefix 'module.' removed, "
                                 f"{len(tiny_sd) - 1} float16 and 1 bfloat16 tensors cast to float32")
    save_file({k: v.contiguous() for k, v in half.items()}, str(tmp_path / "h.safetensors"))
    assert load_checkpoint(tmp_path / "h.safetensors", "dpt_tiny").load_report.conversions() == \
        f"converted on load: {len(tiny_sd) - 1} float16 and 1 bfloat16 tensors cast to float32"
    for name, obj in (("plain.pt", tiny_sd), ("official.pt", {"model": tiny_sd, "optimizer": {}})):
        torch.save(obj, tmp_path / name)
        assert load_checkpoint(tmp_path / name, "dpt_tiny").load_report.conversions() == ""


def test_a_dpt_beside_other_tensors_of_a_training_module_is_said_to_be_one(tmp_path, tiny_sd, tiny_ref, monkeypatch):
    """A Lightning checkpoint whose module holds the DPT as "model" and a loss with class weights ("criterion.weight"),
    or an EMA copy of the DPT: a DPT under a prefix beside other tensors, with a recipe that re-saves the DPT alone
    (before: "not a DPT checkpoint ... a ViT backbone or classifier alone cannot run")."""
    monkeypatch.chdir(tmp_path)   # (the recipe writes weights.pt here)
    sd = {"model." + k: v for k, v in tiny_sd.items()}
    p = tmp_path / "epoch=3.ckpt"
    torch.save({"state_dict": dict(sd, **{"criterion.weight": torch.ones(150)}), "epoch": 3}, p)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(p, "dpt_tiny")
    msg = str(e.value)
    assert msg.startswith(f"{p} holds a DPT under 'model.' ({len(tiny_sd)} tensors) beside 1 other tensor "
                          f"(criterion.weight; ") and "not a DPT checkpoint" not in msg
    exec(re.search(r"e\.g\. (sd = .*)$", msg).group(1), {"torch": torch})   # the recipe, as given
    assert torch.equal(load_engine("dpt_tiny", tmp_path / "weights.pt").run(X)["inverse_depth"], tiny_ref)
    # the same DPT twice (a model and its EMA copy; here in a module in the module): which one is not guessed
    torch.save({"state_dict": dict(sd, **{"ema.net." + k: v for k, v in tiny_sd.items()})}, p)
    with pytest.raises(CheckpointError, match=rf"holds 2 DPTs, under 'model.' \({len(tiny_sd)} tensors\), 'ema.net.' "
                                              rf"\({len(tiny_sd)} tensors\) .*which to load is not known"):
        read_state_dict(p)


def test_prefix_on_only_some_keys_is_kept(tmp_path, tiny_sd):
    """A wrapper prefix is stripped only when every key carries it: one odd key is reported as stored."""
    p = tmp_path / "mixed.pt"
    torch.save(dict(tiny_sd, **{"module.extra.weight": torch.zeros(3)}), p)
    sd = read_state_dict(p)
    assert sd.keys() == tiny_sd.keys() | {"module.extra.weight"}
    with pytest.raises(CheckpointError, match="1 unexpected: module.extra.weight$"):
        load_state_dict_into(DPT("dpt_tiny"), sd)


def test_model_wrapper_with_training_metadata_but_no_optimizer(tmp_path, tiny_sd, tiny_ref):
    """{"model": state dict, "epoch": ...} (a fine-tuning script's save without the optimizer) is unwrapped."""
    p = tmp_path / "finetuned.pt"
    torch.save({"model": tiny_sd, "epoch": 7, "best_loss": 0.125}, p)
    assert torch.equal(load_engine("dpt_tiny", p).run(X)["inverse_depth"], tiny_ref)


def test_hash_check_notices_a_file_rewritten_with_the_same_size(tmp_path, tiny_sd):
    """The digest cache is keyed by path, size and mtime: a same-size file replaced in place (a different
    download, a flipped byte) is hashed again, not trusted from the cache."""
    p = with_hash_name(official_file(tmp_path, tiny_sd, "x.pt"), "dpt_tiny-midas")
    assert verify_sha256_prefix(p) == p.stem.rsplit("-", 1)[1]
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    st = os.stat(p)
    p.write_bytes(bytes(raw))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert os.path.getsize(p) == st.st_size
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        verify_sha256_prefix(p)


def test_hf_to_official_names_the_missing_hugging_face_key(tiny_sd):
    """Converting a Hugging Face state dict that lacks a tensor fails and names the HF key to look for
    (`weights --convert` would otherwise write an incomplete file)."""
    from dpt_ros.model.checkpoint import hf_to_official

    hf = official_to_hf(tiny_sd)
    del hf["neck.fusion_stage.layers.0.projection.bias"]
    del hf["dpt.encoder.layer.1.attention.attention.key.weight"]
    hf["dpt.pooler.dense.weight"] = torch.zeros(192, 192)   # a DPTModel's pooler: no DPT counterpart
    with pytest.raises(CheckpointError) as ei:
        hf_to_official(hf, DPT("dpt_tiny").state_dict().keys())
    msg = str(ei.value)
    assert "2 missing" in msg
    # the pooler; not the query and value of the incomplete q/k/v (they are right: the key is what is missing)
    assert msg.endswith("1 unexpected: dpt.pooler.dense.weight")
    assert "scratch.refinenet4.out_conv.bias (<- neck.fusion_stage.layers.0.projection.bias)" in msg
    assert ("pretrained.model.blocks.1.attn.qkv.weight (<- dpt.encoder.layer.1.attention.attention.key.weight)"
            in msg)
    with pytest.raises(CheckpointError, match=r"^hf.bin \(variant dpt_tiny\): Hugging Face checkpoint does not match"):
        load_state_dict_into(DPT("dpt_tiny"), hf, source="hf.bin")   # a file's error names the file


def test_official_to_hf_drops_the_classifier_and_refuses_unknown_keys(tiny_sd):
    """An official file's timm classifier (no HF counterpart, unused) is dropped; any other key without a
    counterpart is an error naming it, never silently lost."""
    full = dict(tiny_sd, **{"pretrained.model.head.weight": torch.zeros(1000, 192),
                            "pretrained.model.head.bias": torch.zeros(1000)})
    assert official_to_hf(full).keys() == official_to_hf(tiny_sd).keys()
    with pytest.raises(CheckpointError, match=r"keys with no Hugging Face counterpart: \['scratch.extra.weight'\]"):
        official_to_hf(dict(tiny_sd, **{"scratch.extra.weight": torch.zeros(3)}))


def test_hf_safetensors_and_bin(tmp_path, tiny_sd, tiny_ref):
    from safetensors.torch import save_file

    hf = {k: v.clone().contiguous() for k, v in official_to_hf(tiny_sd).items()}
    st = tmp_path / "model.safetensors"
    save_file(hf, str(st))
    bn = tmp_path / "pytorch_model.bin"
    torch.save(hf, bn)
    for p in (st, bn):
        e = load_engine("dpt_tiny", p)
        assert e.model.load_report.source_format == "huggingface"
        assert torch.equal(e.run(X)["inverse_depth"], tiny_ref)


def test_hash_mismatch_is_corrupt(tmp_path, tiny_sd):
    p = official_file(tmp_path, tiny_sd, "dpt_tiny-0123abcd.pt")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_engine("dpt_tiny", p)
    # hash checking can be switched off (the file itself is fine)
    assert load_engine("dpt_tiny", p, verify_hash=False).random_weights is False


def test_hash_check_compares_every_digit_of_the_prefix(tmp_path, tiny_sd):
    """A name whose prefix differs from the digest in its last hex digit only is a mismatch; the whole
    64-digit digest in the name is a prefix too."""
    p = official_file(tmp_path, tiny_sd, "x.pt")
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    wrong = digest[:7] + "0123456789abcdef"[int(digest[7], 16) ^ 1]
    bad = p.rename(p.with_name(f"dpt_tiny-midas-{wrong}.pt"))
    with pytest.raises(CheckpointError, match=f"does not start with {wrong} \\(from the file name\\): the file is "
                                              "corrupt or truncated"):
        verify_sha256_prefix(bad)
    dated = bad.rename(p.with_name("finetuned-20241203.pt"))   # a date, not a hash: the message says what to do
    with pytest.raises(CheckpointError, match="if -20241203 is not one, e.g. a date in your own file's name, rename"):
        verify_sha256_prefix(dated)
    bad = dated.rename(bad)
    assert verify_sha256_prefix(bad.rename(p.with_name(f"dpt_tiny-midas-{digest}.pt"))) == digest


def test_missing_file_says_where_to_get_the_weights(tmp_path):
    """The message names the release file and its URL, the Hugging Face model where there is one, and the
    check to run; a variant without released weights points at random weights as predict and the node take them
    (it said weights='random', load_engine's argument, which neither takes)."""
    missing = tmp_path / "nope.pt"

    def message(variant):
        with pytest.raises(FileNotFoundError) as ei:
            read_state_dict(missing, variant)
        return str(ei.value)

    check = "; check it with: python -m dpt_ros.tools.weights --verify FILE."
    hybrid = message("dpt_hybrid")
    assert hybrid.startswith(f"weights file not found: {missing}. Official weights for dpt_hybrid: https://")
    assert hybrid.endswith("(save as dpt_hybrid-midas-501f0c75.pt), or the Hugging Face model "
                           "Intel/dpt-hybrid-midas (model.safetensors)" + check)
    assert message("dpt_hybrid_kitti").endswith("(save as dpt_hybrid_kitti-cb926ef4.pt)" + check)  # no HF model
    assert message("dpt_base").endswith(". Variant dpt_base has no released weights; for tests give random as the "
                                        "weights (predict --weights random, the node's depth.weights:=random; outputs "
                                        "are meaningless) or pick a released variant.")


def test_a_symlink_loads_the_file_it_names_and_one_to_nothing_is_said_to_be_one(tmp_path, tiny_sd, tiny_ref, capsys):
    """weights/current.pt -> a checkpoint loads it; a link whose file was moved (or whose disk is not mounted) is said
    to be such a link, naming its target (before: only 'not found', for a name that ls lists)."""
    from dpt_ros.tools import weights

    target = official_file(tmp_path, tiny_sd, "dpt_tiny_v2.pt")
    link = tmp_path / "current.pt"
    link.symlink_to(target)
    assert torch.equal(load_engine("dpt_tiny", link).run(X)["inverse_depth"], tiny_ref)
    gone = tmp_path / "mnt" / "dpt_tiny.pt"
    link.unlink()
    link.symlink_to(gone)
    text = (f"current.pt (a symbolic link to {gone}, which does not exist: moved or deleted, or on a disk that is not "
            f"mounted")
    with pytest.raises(FileNotFoundError) as e:
        load_checkpoint(link, "dpt_tiny")
    assert f"weights file not found: {tmp_path}/{text}" in str(e.value)
    with pytest.raises(SystemExit) as e:   # (no file to check: weights' usage error)
        weights.main(["--verify", str(link)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f" error: --verify: no such file: {tmp_path}/{text}; fix the link" in err, err
    assert "download it first" not in err   # (the file is somewhere: the link says where it was)


def test_weights_path_with_a_tilde_is_in_the_home_directory(tmp_path, tiny_sd, monkeypatch):
    """weights:=~/home.pt (as typed in a launch file or a shell without expansion) is read from $HOME."""
    monkeypatch.setenv("HOME", str(tmp_path))
    torch.save(tiny_sd, tmp_path / "home.pt")
    assert read_state_dict("~/home.pt").keys() == tiny_sd.keys()


@pytest.mark.parametrize("content", [b"weights go here\n", b"hello this is text"])
def test_text_file_is_said_to_be_text_with_what_to_do(tmp_path, content):
    """A text file saved as weights: the error says it is text, not a checkpoint, and where to get the weights, with
    no unpickler's words about its first byte (before: '... (KeyError: 101)') and no torch advice to re-run with
    weights_only=False (running code from an untrusted file)."""
    p = tmp_path / "my_weights.pt"
    p.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_engine("dpt_hybrid", p)
    assert str(info.value) == (
        f"{p} is a text file (it starts with {content.decode().strip()!r}), not a PyTorch checkpoint (torch.save's "
        "zip or pickle) nor a .safetensors file. Download the weights as README.md's 'Getting the official weights' "
        f"says (official weights for dpt_hybrid: {get_variant('dpt_hybrid').url}), and check the downloaded file "
        "with: python -m dpt_ros.tools.weights --verify FILE")
    with pytest.raises(CheckpointError, match=r"not a PyTorch checkpoint .*says, and check"):   # (no released weights)
        load_engine("dpt_tiny", p)


def test_truncated_file(tmp_path, tiny_sd):
    good = official_file(tmp_path, tiny_sd, "good.pt")
    data = good.read_bytes()
    bad = tmp_path / "dpt_tiny_cut.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_engine("dpt_tiny", bad)
    # same truncated bytes under a hash-carrying name: caught by the hash, before unpickling
    named = tmp_path / f"dpt_tiny-{hashlib.sha256(data).hexdigest()[:8]}.pt"
    shutil.copy(bad, named)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_engine("dpt_tiny", named)
    st = tmp_path / "model.safetensors"
    st.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_engine("dpt_tiny", st)
    # a download of model.safetensors cut in the middle: what it is and what to do (it said '(corrupt or truncated?)')
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tiny_sd.items()}, str(st))
    data = st.read_bytes()
    st.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as ei:
        load_engine("dpt_tiny", st)
    assert str(ei.value).startswith(f"{st}: cannot read the safetensors file: it is corrupt or truncated "
                                    f"({len(data) // 2} bytes; ") and str(ei.value).endswith(
        "). Download it again (its size and sha256 are on its download page)"), str(ei.value)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _largest_tensor_record(path):
    """A torch.save zip's largest tensor record (its ZipInfo), and where its bytes start in the file."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    head = path.read_bytes()[info.header_offset:info.header_offset + 30]
    return info, info.header_offset + 30 + int.from_bytes(head[26:28], "little") + int.from_bytes(head[28:30], "little")


def test_a_torch_file_damaged_in_a_tensors_bytes_is_refused_by_its_zip_checksums(tmp_path, tiny_sd):
    """A torch.save zip with a byte changed in a tensor's data (same length) under a name that carries no hash prefix:
    torch.load reads it without complaint (it does not compare the zip's CRC-32s) and the weights would differ; the
    loader compares them and names the damaged record."""
    from dpt_ros.model.checkpoint import check_zip_crcs

    good = official_file(tmp_path, tiny_sd, "dpt_tiny.pt", wrapper=False)
    assert check_zip_crcs(good) == len(tiny_sd) + 2 + 6   # its tensors, the classifier's two, data.pkl and 5 small ones
    info, start = _largest_tensor_record(good)
    data = bytearray(good.read_bytes())
    data[start + info.file_size // 2] ^= 0x40
    bad = tmp_path / "mine.pt"
    bad.write_bytes(bytes(data))
    loaded = torch.load(bad, weights_only=True)   # what torch does with it: other values, no error
    assert any(not torch.equal(loaded[k], t) for k, t in tiny_sd.items())
    with pytest.raises(CheckpointError, match=rf"mine\.pt: the file is damaged: 1 of its \d+ zip records fails the "
                                              rf"CRC-32 check .*\({info.filename}; .*Download or copy it again"):
        load_checkpoint(bad, "dpt_tiny")
    with pytest.raises(CheckpointError, match="damaged"):   # also as a shard, or read without a variant
        read_state_dict(bad, verify_hash=False)
    # the directory of the zip damaged (the version its reader needs: torch ignores it)
    data = bytearray(good.read_bytes())
    data[data.find(b"PK\x01\x02") + 6] ^= 0x40
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged: the directory of its zip cannot be read"):
        load_checkpoint(bad, "dpt_tiny")
    # intact: loads; a file saved without checksums (torch stores 0 for each) and a legacy (non-zip) one load too
    assert load_checkpoint(good, "dpt_tiny").load_report.loaded == len(tiny_sd)
    nocrc, legacy = tmp_path / "nocrc.pt", tmp_path / "legacy.pt"
    torch.serialization.set_crc32_options(False)
    try:
        torch.save(tiny_sd, nocrc)
    finally:
        torch.serialization.set_crc32_options(True)
    torch.save(tiny_sd, legacy, _use_new_zipfile_serialization=False)
    for p in (nocrc, legacy):
        assert check_zip_crcs(p) is None
        assert load_checkpoint(p, "dpt_tiny").load_report.loaded == len(tiny_sd)


def test_unsafe_pickle_refused(tmp_path, tiny_sd):
    p = tmp_path / "evil.pt"
    torch.save({"model": tiny_sd, "extra": Evil()}, p)
    with pytest.raises(CheckpointError, match="refusing to unpickle") as err:
        read_state_dict(p)
    assert "add_safe_globals" not in str(err.value) and "weights_only=False" not in str(err.value)   # no advice
    module = tmp_path / "module.pt"   # a whole model saved: its class named, no advice to allow it
    torch.save(DPT("dpt_tiny"), module)
    with pytest.raises(CheckpointError, match=r"Re-save only the state dict. Detail: .*dpt_ros.model.dpt.DPT") as err:
        read_state_dict(module)
    assert "add_safe_globals" not in str(err.value), str(err.value)


def test_not_a_state_dict(tmp_path):
    p = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], p)
    with pytest.raises(CheckpointError, match="state dict"):
        read_state_dict(p)
    p2 = tmp_path / "mixed.pt"
    torch.save({"a": torch.zeros(1), "b": 3}, p2)
    with pytest.raises(CheckpointError, match="non-tensor"):
        read_state_dict(p2)


def test_a_file_of_tensors_without_values_is_refused_saying_so(tmp_path, tiny_sd):
    """A state dict saved from a model built on the meta device (its weights never loaded): tensors with shapes and no
    values (before: RuntimeError 'Tensor.item() cannot be called on meta tensors' from the NaN check)."""
    p = tmp_path / "empty.pt"
    torch.save({k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in tiny_sd.items()}, p)
    with pytest.raises(CheckpointError, match=rf"empty\.pt: {len(tiny_sd)} of its {len(tiny_sd)} tensors hold no values "
                                              r"\(on PyTorch's 'meta' device: pretrained\.model\.cls_token, \.\.\.\): "
                                              r".*save the state dict after the weights are loaded"):
        load_checkpoint(p, "dpt_tiny")


def test_wrong_variant_named(tmp_path, tiny_sd):
    p = official_file(tmp_path, tiny_sd, "tiny.pt")
    with pytest.raises(CheckpointError) as ei:
        load_engine("dpt_hybrid", p)
    msg = str(ei.value)
    assert "dpt_tiny" in msg and "dpt_hybrid" in msg and "set the variant" in msg


@pytest.mark.parametrize("have,want,expect", [
    ("dpt_large", "dpt_hybrid", "dpt_large, dpt_large_ade20k"),   # backbone differs; task unknown
    ("dpt_large", "dpt_large_ade20k", "dpt_large"),
    ("dpt_hybrid_ade20k", "dpt_hybrid", "dpt_hybrid_ade20k"),
    ("dpt_large_ade20k", "dpt_base", "dpt_large_ade20k"),
])
def test_wrong_variant_full_size_shapes(have, want, expect):
    """Detection works on shapes alone (meta tensors: no memory, no compute)."""
    with torch.device("meta"):
        sd = DPT(have).state_dict()
        model = DPT(want)
    assert have in matching_variants(sd)
    # ("It matches variant(s): ...", or for a checkpoint of the other task "It is a ... checkpoint (variant(s): ...)")
    with pytest.raises(CheckpointError, match=f"variant\\(s\\): {expect.split(',')[0]}"):
        load_state_dict_into(model, sd)
    # HF names are recognised the same way
    with pytest.raises(CheckpointError, match=have):
        load_state_dict_into(model, official_to_hf(sd))


@pytest.mark.parametrize("have,want,advice", [
    # a 21-class fine-tune of the ADE20K hybrid: only the class count differs, and no registered variant has it
    (get_variant("dpt_hybrid_ade20k").replace(num_classes=21), "dpt_hybrid_ade20k",
     "segmentation (21 classes)) than variant 'dpt_hybrid_ade20k' (hybrid backbone, width 768, 12 blocks, "
     "segmentation (150 classes)). It matches no registered variant, or use dpt_hybrid-ade20k-53898607.pt "
     "(https://github.com/intel-isl/DPT/releases/download/1_0/dpt_hybrid-ade20k-53898607.pt) for dpt_hybrid_ade20k."),
    # an architecture-only variant has no release file to point at
    ("dpt_large", "dpt_base", "It matches variant(s): dpt_large; set the variant to one of them."),
    # a depth checkpoint given for segmentation: "set the variant to dpt_large" led to segmentation.variant's refusal
    ("dpt_large", "dpt_large_ade20k", "It is a depth model's checkpoint (variant(s): dpt_large), not a segmentation "
     "model's: use it for depth (the node's depth.weights, with depth.variant dpt_large), or use "
     "dpt_large-ade20k-b12dca68.pt (https://github.com/intel-isl/DPT/releases/download/1_0/dpt_large-ade20k-b12dca68.pt) "
     "for dpt_large_ade20k."),
    ("dpt_hybrid_ade20k", "dpt_hybrid", "It is a segmentation model's checkpoint (variant(s): dpt_hybrid_ade20k), not "
     "a depth model's: use it for segmentation (the node's segmentation.weights, with segmentation.variant "
     "dpt_hybrid_ade20k), or use dpt_hybrid-midas-501f0c75.pt "
     "(https://github.com/intel-isl/DPT/releases/download/1_0/dpt_hybrid-midas-501f0c75.pt) for dpt_hybrid."),
])
def test_wrong_variant_message_says_what_to_do(have, want, advice):
    with torch.device("meta"):
        sd = DPT(have).state_dict()
        model = DPT(want)
    with pytest.raises(CheckpointError) as ei:
        load_state_dict_into(model, sd, source="x.pt")
    assert str(ei.value).startswith("x.pt holds a different DPT (") and str(ei.value).endswith(advice)


def test_describe_state_dict():
    with torch.device("meta"):
        sd = DPT("dpt_hybrid_ade20k").state_dict()
    f = describe_state_dict(sd)
    assert f == {"backbone": "hybrid", "embed_dim": 768, "depth": 12, "task": "segmentation",
                 "num_classes": 150, "channels": (256, 512, 768, 768)}
    assert describe_state_dict(official_to_hf(sd)) == f   # the same facts from Hugging Face names


def test_strict_key_listing(tiny_sd):
    sd = dict(tiny_sd)
    del sd["scratch.refinenet2.out_conv.bias"]
    sd["scratch.extra.weight"] = torch.zeros(3)
    sd["scratch.refinenet1.out_conv.weight"] = torch.zeros(64, 64, 3, 3)
    with pytest.raises(CheckpointError) as ei:
        load_state_dict_into(DPT("dpt_tiny"), sd, source="edited")
    msg = str(ei.value)
    assert "1 missing: scratch.refinenet2.out_conv.bias" in msg
    assert "1 unexpected: scratch.extra.weight" in msg
    assert "scratch.refinenet1.out_conv.weight (64, 64, 3, 3) vs model (64, 64, 1, 1)" in msg


def test_key_listing_is_capped_at_25_names():
    """A state dict with only the decoder (an export that lost the encoder) lists 25 missing names and the count
    of the rest, under the variant's name; one with nothing of a DPT is called that."""
    model = DPT("dpt_tiny")
    decoder = {k: v for k, v in model.state_dict().items() if k.startswith("scratch.")}
    n = len(model.state_dict()) - len(decoder)
    with pytest.raises(CheckpointError, match=r"^empty.pt is not a DPT checkpoint: none of its 0 tensors \(\)"):
        load_state_dict_into(model, {}, source="empty.pt")
    with pytest.raises(CheckpointError) as ei:
        load_state_dict_into(model, decoder, source="decoder.pt")
    msg = str(ei.value)
    assert msg.startswith(f"decoder.pt (variant dpt_tiny) does not match the model:\n  {n} missing: "
                          "pretrained.model.cls_token, pretrained.model.pos_embed, ")
    assert msg.endswith(f", ... ({n - 25} more)") and msg.count(", ") == 25 and "\n" not in msg.split(":\n", 1)[1]


def test_segmentation_without_auxlayer_is_reported():
    v = get_variant("dpt_hybrid_ade20k").replace(
        embed_dim=64, depth=4, num_heads=2, hooks=(0, 1, 2, 3), channels=(128, 256, 64, 64),
        resnet_layers=(1, 1, 1), resnet_channels=(128, 256, 512), resnet_stem=32, features=32)
    sd = random_state_dict(v, seed=3)
    full = DPT(v)
    rep = load_state_dict_into(full, sd)
    assert rep.absent_optional == []
    assert torch.equal(full.auxlayer[4].weight, sd["auxlayer.4.weight"])  # loaded, never run
    no_aux = {k: t for k, t in sd.items() if not k.startswith("auxlayer.")}
    rep = load_state_dict_into(DPT(v), no_aux)
    assert rep.absent_optional and all(k.startswith("auxlayer.") for k in rep.absent_optional)
    rep = load_state_dict_into(DPT(v), official_to_hf(no_aux))   # the same with HF names (no auxiliary_head.*)
    assert rep.source_format == "huggingface" and sorted(rep.absent_optional) == sorted(
        k for k in sd if k.startswith("auxlayer.") and not k.endswith(".num_batches_tracked"))
    assert rep.absent_counters == ["auxlayer.1.num_batches_tracked"]   # (counters are counted as such)


def test_batchnorm_counters_absent_from_the_file_are_filled_and_reported(tmp_path):
    """A segmentation file without BatchNorm's num_batches_tracked buffers (unused at inference) loads,
    in memory and from a file (meta-device build), with the same outputs; any other missing key fails."""
    v = get_variant("dpt_hybrid_ade20k").replace(
        embed_dim=64, depth=4, num_heads=2, hooks=(0, 1, 2, 3), channels=(128, 256, 64, 64),
        resnet_layers=(1, 1, 1), resnet_channels=(128, 256, 512), resnet_stem=32, features=32)
    sd = random_state_dict(v, seed=4)
    counters = [k for k in sd if k.endswith(".num_batches_tracked")]
    assert counters   # the segmentation head's and fusion blocks' BatchNorms
    lean = {k: t for k, t in sd.items() if k not in counters}
    ref = DPT(v)
    load_state_dict_into(ref, sd)
    m = DPT(v)
    rep = load_state_dict_into(m, lean)
    assert any(k.startswith("auxlayer.") for k in counters)
    # the auxiliary head's counter too: its head is in the file (it used to be reported as "no auxiliary head")
    assert sorted(rep.absent_counters) == sorted(counters) and rep.loaded == len(lean)
    assert rep.absent_optional == []
    path = tmp_path / "lean.pt"
    torch.save(lean, path)
    from_file = load_checkpoint(path, v)   # built on the meta device: the filled counters are real tensors
    assert sorted(from_file.load_report.absent_counters) == sorted(counters)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = ref.eval()(x)
        assert want.shape == (1, 150, 64, 64)
        assert torch.equal(m.eval()(x), want) and torch.equal(from_file.eval()(x), want)
    with pytest.raises(CheckpointError, match="missing"):
        load_state_dict_into(DPT(v), {k: t for k, t in lean.items() if not k.endswith("running_var")})


def test_release_file_of_other_variant(tmp_path, tiny_sd, tiny_hybrids):
    # a file named like the KITTI release, holding a KITTI-shaped hybrid, requested as the relative-depth hybrid: the
    # name is all that tells the two apart (tiny_hybrids: the registry's hybrid depth variants at a test size)
    kitti = tmp_path / "dpt_hybrid_kitti-cb926ef4.pt"
    torch.save(random_state_dict(tiny_hybrids["dpt_hybrid_kitti"], seed=2), kitti)
    with pytest.raises(CheckpointError) as ei:
        load_engine("dpt_hybrid", kitti, verify_hash=False)
    assert str(ei.value) == (f"{kitti} is the release file of variant 'dpt_hybrid_kitti' (DPT-Hybrid fine-tuned on "
                             f"KITTI, metric depth in metres), but variant 'dpt_hybrid' was requested; set the variant "
                             f"to 'dpt_hybrid_kitti' or use dpt_hybrid-midas-501f0c75.pt.")
    assert load_engine("dpt_hybrid_kitti", kitti, verify_hash=False).variant.name == "dpt_hybrid_kitti"
    # the same name on a file whose tensors are no hybrid's (a dpt_tiny): setting the variant to the name's would be
    # refused too (a different DPT); what the tensors are is said, and that the name is to go
    p = official_file(tmp_path, tiny_sd, "dpt_hybrid_kitti-cb926ef4.pt")
    with pytest.raises(CheckpointError) as ei:
        load_engine("dpt_hybrid", p, verify_hash=False)
    assert str(ei.value) == (
        f"{p} is named like the release file of variant 'dpt_hybrid_kitti' (DPT-Hybrid fine-tuned on KITTI, metric "
        f"depth in metres), but its tensors are not that variant's: they have the architecture of variant(s) dpt_tiny "
        f"(vit backbone, width 192, 12 blocks, depth), not of 'dpt_hybrid' either. Rename it (to a name that is no "
        f"other variant's release file) and set the variant to one of them, or, for 'dpt_hybrid_kitti', download its "
        f"release file: https://github.com/intel-isl/DPT/releases/download/1_0/dpt_hybrid_kitti-cb926ef4.pt.")


def test_mmap_load_shares_file_storage(tmp_path, tiny_sd):
    """Loaded parameters come from the memory-mapped file (no second copy) when fp32 on the CPU."""
    p = official_file(tmp_path, tiny_sd, "mm.pt", wrapper=False)
    m = load_checkpoint(p, "dpt_tiny")
    w = m.scratch.layer1_rn.weight
    assert not w.is_meta and torch.equal(w, tiny_sd["scratch.layer1_rn.weight"])
    # assign=True kept the file's tensors: the checkpoint stays memory-mapped, not copied to the heap
    if os.path.exists("/proc/self/maps"):
        with open("/proc/self/maps") as f:
            assert str(p) in f.read()


def test_hf_snapshot_directory_and_bad_weights_arg(tmp_path, tiny_sd, tiny_ref):
    from safetensors.torch import save_file

    snap = tmp_path / "snapshot"
    snap.mkdir()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_engine("dpt_tiny", snap)
    save_file({k: v.clone().contiguous() for k, v in official_to_hf(tiny_sd).items()}, str(snap / "model.safetensors"))
    (snap / "pytorch_model.bin").write_bytes(b"never read")   # snapshots often hold both: safetensors wins
    assert torch.equal(load_engine("dpt_tiny", snap).run(X)["inverse_depth"], tiny_ref)
    with pytest.raises(TypeError, match="random"):
        load_engine("dpt_tiny", None)


def test_engine_close_and_warmup():
    e = load_engine("dpt_tiny", "random")
    e.warmup(64, 64)
    e.close()
    with pytest.raises(RuntimeError, match="close"):
        e.run(X)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_engine_owns_its_weights(tmp_path, tiny_sd, precision):
    """An engine survives its weights file being truncated in place (no SIGBUS, same outputs)."""
    p = official_file(tmp_path, tiny_sd, f"own_{precision}.pt", wrapper=False)
    e = load_engine("dpt_tiny", p, precision=precision)
    ref = e.run(X)["inverse_depth"]
    if os.path.exists("/proc/self/maps"):
        with open("/proc/self/maps") as f:
            assert str(p) not in f.read()  # nothing of the engine is mapped from the file any more
    with open(p, "r+b") as f:
        f.truncate(os.path.getsize(p) // 3)
    assert torch.equal(e.run(X)["inverse_depth"], ref)


def test_file_that_is_not_a_checkpoint(tmp_path):
    """A text file or random bytes under a .pt name: CheckpointError, never a raw unpickler error."""
    text = tmp_path / "notes.pt"
    text.write_bytes(b"this is not a checkpoint")
    noise = tmp_path / "noise.pt"
    noise.write_bytes(bytes(range(256)) * 12)
    for p, why in ((text, " is a text file"), (noise, ": .*corrupt")):
        with pytest.raises(CheckpointError, match=rf"{p.name}{why}"):
            load_engine("dpt_tiny", p)
    # created, never written (an interrupted download): said as such, before a release name's hash check
    for name in ("empty.pt", "dpt_hybrid-midas-501f0c75.pt"):
        empty = tmp_path / name
        empty.write_bytes(b"")
        variant = "dpt_hybrid" if "hybrid" in name else "dpt_tiny"
        with pytest.raises(CheckpointError) as e:
            read_state_dict(empty, variant)
        where = f"; official weights for dpt_hybrid: {get_variant('dpt_hybrid').url}" if variant == "dpt_hybrid" else ""
        assert str(e.value) == (f"{empty} is empty (0 bytes: an interrupted download, or a full disk when it was "
                                f"saved). Download the file itself{where}.")


def test_check_format_passes_the_three_checkpoint_kinds_and_names_the_rest(tmp_path):
    """The quick look a weights parameter gets when set: torch.save's zip, a legacy pickle and a .safetensors file
    pass (their first bytes); text, noise and a safetensors name on other bytes are refused with what they are."""
    from safetensors.torch import save_file

    from dpt_ros.model.checkpoint import check_format

    sd = {"w": torch.zeros(3)}
    torch.save(sd, tmp_path / "zip.pt")
    torch.save(sd, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    save_file(sd, str(tmp_path / "model.safetensors"))
    for name in ("zip.pt", "legacy.pt", "model.safetensors"):
        check_format(tmp_path / name)
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    (tmp_path / "noise.pt").write_bytes(bytes(range(7, 200)))
    (tmp_path / "bad.safetensors").write_bytes((10**9).to_bytes(8, "little") + b"{}")
    for name, why in (("notes.pt", "it starts with text ('not a checkpoint')"),
                      ("noise.pt", "not a PyTorch checkpoint (a zip or pickle file) nor a .safetensors file: corrupt"),
                      ("bad.safetensors", "not a safetensors file")):
        with pytest.raises(CheckpointError, match=re.escape(why)):
            check_format(tmp_path / name)


def test_lfs_pointer_or_html_page_saved_as_weights_is_named_as_such(tmp_path):
    """The two usual failed downloads get a message that says what the file is and where to get the real one
    (the release-named file would otherwise fail its hash check as 'corrupt')."""
    lfs = tmp_path / "dpt_hybrid-midas-501f0c75.pt"
    lfs.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 1\n")
    page = tmp_path / "dpt_large.pt"
    page.write_bytes(b"\n<!DOCTYPE html><html><head><title>Sign in</title></head></html>")
    with pytest.raises(CheckpointError, match=r"Git LFS pointer.*git lfs pull.*dpt_hybrid-midas-501f0c75\.pt"):
        load_engine("dpt_hybrid", lfs)
    with pytest.raises(CheckpointError, match=r"dpt_large\.pt is an HTML/XML page.*releases/download"):
        load_engine("dpt_large", page)
    proxy = tmp_path / "dpt_hybrid_nyu-2ce69ec7.pt"   # a proxy's block page: no doctype, release name
    proxy.write_bytes(b"<HTML><body>Access denied</body></HTML>")
    with pytest.raises(CheckpointError, match=r"is an HTML/XML page.*releases/download/1_0/dpt_hybrid_nyu"):
        load_engine("dpt_hybrid_nyu", proxy)


TINY_HYBRID = dict(embed_dim=64, depth=2, num_heads=2, hooks=(0, 1, 0, 1), channels=(128, 256, 64, 64),
                   resnet_layers=(1, 1, 1), resnet_channels=(128, 256, 512), resnet_stem=32, features=32)


@pytest.fixture
def tiny_hybrids(monkeypatch):
    """The registry's hybrid depth variants (relative, KITTI, NYU: one architecture) at TINY_HYBRID's size, their
    names, release files and hash prefixes kept: what a file's name says is checked against its tensors' architecture
    by the registry's entry of that name."""
    from dpt_ros.model import VARIANTS

    tiny = {name: VARIANTS[name].replace(**TINY_HYBRID)
            for name in ("dpt_hybrid", "dpt_hybrid_kitti", "dpt_hybrid_nyu")}
    for name, v in tiny.items():
        monkeypatch.setitem(VARIANTS, name, v)
    return tiny


def test_midas_v3_name_of_other_variant(tmp_path, tiny_hybrids):
    """dpt_hybrid_384.pt (MiDaS v3 name of the relative-depth hybrid) requested as the KITTI/NYU metric
    variant (same architecture) is refused like the DPT release name is, not silently run as metres."""
    rel = tiny_hybrids["dpt_hybrid"]
    sd = random_state_dict(rel, seed=4)
    p = tmp_path / "dpt_hybrid_384.pt"
    torch.save(sd, p)
    for metric in ("dpt_hybrid_kitti", "dpt_hybrid_nyu"):
        with pytest.raises(CheckpointError) as ei:
            load_checkpoint(p, metric)
        v = tiny_hybrids[metric]
        assert str(ei.value) == (f"{p} is the release file of variant 'dpt_hybrid' (DPT-Hybrid (ResNet-50 + ViT-B/16), "
                                 f"relative inverse depth), but variant {metric!r} was requested; set the variant to "
                                 f"'dpt_hybrid' or use {v.checkpoint}.")
    assert load_checkpoint(p, rel).variant.name == "dpt_hybrid"  # its own variant still loads


def test_a_file_named_like_a_release_of_another_architecture_is_told_to_be_renamed(tmp_path, tiny_hybrids, capsys):
    """DPT-Hybrid weights saved as dpt_large_384.pt (DPT-Large's MiDaS v3 name) and loaded as dpt_hybrid were told
    "set the variant to 'dpt_large'", and as dpt_large the architecture check sent them back to dpt_hybrid: advice
    that led nowhere, also from weights --verify without --variant. The name check now reads the tensors'
    architecture: a name of a variant whose architecture they do not have is to be renamed."""
    from dpt_ros.tools import weights

    p = tmp_path / "dpt_large_384.pt"
    torch.save(random_state_dict(tiny_hybrids["dpt_hybrid"], seed=6), p)
    arch = "hybrid backbone, width 64, 2 blocks, depth"
    named = (f"{p} is named like the release file of variant 'dpt_large' (DPT-Large (ViT-L/16), relative inverse depth "
             f"(MiDaS v3 training mix)), but its tensors are not that variant's: they have the architecture of variant")
    midas = ("or, for 'dpt_large', download its release file: "
             "https://github.com/isl-org/MiDaS/releases/download/v3/dpt_large_384.pt.")
    rename = (f"{named} 'dpt_hybrid' ({arch}). Rename it (to a name that is no other variant's release file) to load "
              f"it as 'dpt_hybrid', {midas}")
    with pytest.raises(CheckpointError) as ei:
        load_checkpoint(p, "dpt_hybrid")
    assert str(ei.value) == rename
    with pytest.raises(CheckpointError, match=r"It matches variant\(s\): dpt_hybrid, dpt_hybrid_kitti, dpt_hybrid_nyu"):
        load_checkpoint(p, "dpt_large")   # (the name's variant: the architecture check says what the tensors are)
    with pytest.raises(CheckpointError) as ei:   # neither the name's nor the requested: the variants to set are named
        load_checkpoint(p, "dpt_base")
    assert str(ei.value) == (f"{named}(s) dpt_hybrid, dpt_hybrid_kitti, dpt_hybrid_nyu ({arch}), not of 'dpt_base' "
                             f"either. Rename it (to a name that is no other variant's release file) and set the "
                             f"variant to one of them, {midas}")
    assert weights.main(["--verify", str(p)]) == 1   # no --variant: the first matching variant's refusal, as the node's
    err = capsys.readouterr().err
    assert err == f"FAILED: {rename}\n"
    renamed = p.rename(tmp_path / "my_hybrid.pt")   # what the message says: then it loads as dpt_hybrid
    assert load_checkpoint(renamed, "dpt_hybrid").variant.name == "dpt_hybrid"
    assert weights.main(["--verify", str(renamed)]) == 0
    assert "strict load as dpt_hybrid (no --variant" in capsys.readouterr().out
    # a file that is no DPT under a release name is said to be that, by the architecture check, as under any name
    torch.save({"pretrained.model.pos_embed": torch.zeros(1, 577, 64)}, p)
    with pytest.raises(CheckpointError, match=r"dpt_large_384\.pt is not a DPT checkpoint"):
        load_checkpoint(p, "dpt_hybrid")


def test_weights_tool_verifies_snapshot_directory(tmp_path, tiny_sd):
    """``weights --verify`` takes a Hugging Face snapshot folder, as load_engine and --convert do."""
    from safetensors.torch import save_file

    from dpt_ros.tools import weights

    snap = tmp_path / "snapshot"
    snap.mkdir()
    save_file({k: v.clone().contiguous() for k, v in official_to_hf(tiny_sd).items()}, str(snap / "model.safetensors"))
    report = weights.verify(snap, "dpt_tiny")
    assert "model.safetensors" in report and "strict load as dpt_tiny: OK" in report
    assert weights.main(["--verify", str(snap), "--variant", "dpt_tiny"]) == 0
    with pytest.raises(SystemExit) as e:   # a folder without weights: no file to check (weights' usage error)
        weights.main(["--verify", str(tmp_path)])
    assert e.value.code == 2


def test_a_long_load_error_is_cut_at_a_word_with_a_mark():
    from dpt_ros.model.checkpoint import _load_failure_cause

    words = " ".join(f"word{i:03d}" for i in range(100))            # 799 characters
    cause = _load_failure_cause(RuntimeError(words))
    assert cause.endswith(" ...") and len(cause) <= 304
    assert words.startswith(cause[:-4]) and cause[:-4].split()[-1] == "word036"   # a whole word, not "word03"
    assert _load_failure_cause(RuntimeError("short cause")) == "short cause"
    assert _load_failure_cause(RuntimeError("x" * 400)) == "x" * 300 + " ..."      # one long word: cut inside it


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_a_half_precision_file_loads_as_its_values_in_fp32(tmp_path, half):
    """A checkpoint saved in fp16 / bf16 is its values in fp32: build_model is fp32 (a forward works), and the
    hybrid's weight standardisation is folded from those fp32 values, not rounded to the file's precision first
    (an fp32 engine then runs exactly as on the same values saved in fp32)."""
    from dpt_ros.model import Engine, build_model

    v = get_variant("dpt_hybrid").replace(**TINY_HYBRID)
    small = {k: t.to(half) if t.is_floating_point() else t for k, t in random_state_dict(v, seed=6).items()}
    torch.save(small, tmp_path / "half.pt")
    torch.save({k: t.float() if t.is_floating_point() else t for k, t in small.items()}, tmp_path / "full.pt")
    model = build_model(v, tmp_path / "half.pt")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    x = X[:, :, :64, :64]
    with torch.no_grad():
        model(x)
    got = Engine(model).run(x)["inverse_depth"]
    want = Engine(build_model(v, tmp_path / "full.pt")).run(x)["inverse_depth"]
    assert torch.equal(got, want)


def test_integer_tensors_for_floating_point_weights_are_named(tmp_path, tiny_sd):
    bad = dict(tiny_sd)
    bad["scratch.layer1_rn.weight"] = torch.zeros(tiny_sd["scratch.layer1_rn.weight"].shape, dtype=torch.int64)
    torch.save(bad, tmp_path / "ints.pt")
    with pytest.raises(CheckpointError, match=r"1 not floating point: scratch.layer1_rn.weight int64"):
        load_checkpoint(tmp_path / "ints.pt", "dpt_tiny")


def test_the_format_is_read_from_the_content_not_the_name(tmp_path, tiny_sd, tiny_ref):
    """A safetensors file saved as .pt, a torch file saved as .safetensors, and a training script's
    {'model_state_dict', 'optimizer_state_dict', 'epoch'} checkpoint all load as what they hold."""
    from safetensors.torch import save_file

    from dpt_ros.model.checkpoint import check_format

    save_file(dict(tiny_sd), str(tmp_path / "weights.pt"))
    torch.save(dict(tiny_sd), tmp_path / "weights.safetensors")
    torch.save({"model_state_dict": dict(tiny_sd), "optimizer_state_dict": {"state": {}}, "epoch": 3},
               tmp_path / "training.pt")
    for name in ("weights.pt", "weights.safetensors", "training.pt"):
        check_format(tmp_path / name)
        assert torch.equal(load_engine("dpt_tiny", tmp_path / name).run(X)["inverse_depth"], tiny_ref), name


def test_a_file_it_cannot_read_or_that_is_no_regular_file_says_so(tmp_path, tiny_sd, monkeypatch):
    from dpt_ros.model import checkpoint

    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match=r"pipe.pt is not a regular file \(a device, pipe or socket\)"):
        load_engine("dpt_tiny", fifo)
    path = tmp_path / "theirs.pt"
    torch.save(dict(tiny_sd), path)

    def denied(p, v):   # (as root every file is readable: the open fails as it does for another user)
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(checkpoint, "_refuse_download_artifacts", denied)
    with pytest.raises(CheckpointError, match=r"theirs.pt: cannot read it: Permission denied; the node's user needs"):
        load_engine("dpt_tiny", path)


def test_a_converted_file_keeps_its_variant(tmp_path):
    """weights --convert records the variant in the safetensors metadata: a KITTI file, renamed by the conversion,
    is still refused as the relative model of the same architecture (its metres would be lost)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from dpt_ros.model.checkpoint import VARIANT_METADATA_KEY

    kitti = get_variant("dpt_hybrid_kitti").replace(**TINY_HYBRID)
    sd = random_state_dict(kitti, seed=8)
    save_file(sd, str(tmp_path / "model.safetensors"), metadata={"format": "pt", VARIANT_METADATA_KEY: kitti.name})
    with pytest.raises(CheckpointError, match=r"holds the weights of variant 'dpt_hybrid_kitti'.*set the variant to "
                                              r"'dpt_hybrid_kitti'"):
        load_checkpoint(tmp_path / "model.safetensors", get_variant("dpt_hybrid").replace(**TINY_HYBRID))
    assert load_checkpoint(tmp_path / "model.safetensors", kitti).variant.name == "dpt_hybrid_kitti"
    from dpt_ros.tools import weights

    torch.save(random_state_dict("dpt_tiny", seed=2), tmp_path / "tiny.pt")
    assert weights.main(["--convert", str(tmp_path / "tiny.pt"), str(tmp_path / "out.safetensors"),
                         "--variant", "dpt_tiny"]) == 0
    with safe_open(str(tmp_path / "out.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt", VARIANT_METADATA_KEY: "dpt_tiny"}


def test_file_hashes_are_remembered_per_file_version_and_the_memory_stays_bounded(tmp_path):
    """A file's SHA-256 is computed once per (path, size, mtime); a rewritten file is hashed again; a node that
    swaps through many checkpoint files keeps at most the newest 32 answers, and every answer is still the file's."""
    from dpt_ros.model import checkpoint

    checkpoint._hash_cache.clear()
    files = []
    for i in range(45):
        p = tmp_path / f"w{i}.bin"
        p.write_bytes(bytes([i]) * (1000 + i))
        files.append(p)
        assert checkpoint.file_sha256(p) == hashlib.sha256(p.read_bytes()).hexdigest()
        assert len(checkpoint._hash_cache) <= 32
    assert all(checkpoint.file_sha256(p) == hashlib.sha256(p.read_bytes()).hexdigest() for p in files)
    p = files[-1]
    p.write_bytes(b"other contents")
    os.utime(p, ns=(1, 1))
    assert checkpoint.file_sha256(p) == hashlib.sha256(b"other contents").hexdigest()


def test_a_file_removed_after_the_existence_check_is_not_found_not_a_permission_problem(tmp_path, monkeypatch):
    """A weights file deleted between the check that it exists and its first read (a cleanup, a download replacing
    it: seen in a hot-swap test under load) is FileNotFoundError with the not-found advice; it was reported as "cannot
    read it ... the node's user needs read access". The deletion is put at that point."""
    from dpt_ros.model import checkpoint

    path = tmp_path / "w.pt"
    torch.save(random_state_dict("dpt_tiny", seed=0), path)
    real = checkpoint._refuse_download_artifacts

    def removed_first(p, v):
        os.remove(p)
        return real(p, v)

    monkeypatch.setattr(checkpoint, "_refuse_download_artifacts", removed_first)
    with pytest.raises(FileNotFoundError, match="weights file not found: .*w.pt"):
        checkpoint.read_state_dict(path, "dpt_tiny")


def test_other_containers_are_named_with_what_to_do(tmp_path, tiny_sd):
    """A zip that is not torch.save's (a .zip holding the checkpoint, a NumPy .npz, a TorchScript archive, any other zip)
    and a plain pickle.dump file are said to be what they are, with what to do, not called corrupt ("Download it again")."""
    import pickle
    import zipfile

    import numpy as np

    inner = official_file(tmp_path, tiny_sd, "dpt_tiny.pt", wrapper=False)
    zipped = tmp_path / "weights.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.write(inner, "dpt_tiny.pt")
    npz = tmp_path / "weights.npz"
    np.savez(npz, **{k: v.numpy() for k, v in list(tiny_sd.items())[:3]})
    other = tmp_path / "other.pt"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("readme.txt", "hello")
    pickled = tmp_path / "pickled.pt"
    pickled.write_bytes(pickle.dumps(dict(list(tiny_sd.items())[:3]), protocol=4))
    scripted = tmp_path / "dpt_tiny_scripted.pt"   # an export for C++ / deployment (before: "corrupt or truncated")
    torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))), scripted)
    expected = {
        zipped: f"is a zip archive holding dpt_tiny.pt, not a PyTorch checkpoint itself: unpack it (unzip {zipped})",
        npz: "is a NumPy .npz archive (np.savez), not a PyTorch checkpoint: re-save its arrays as tensors",
        other: "is a zip archive (1 file: readme.txt) that is not a PyTorch checkpoint (torch.save's zip holds "
               "<name>/data.pkl)",
        pickled: "is a plain Python pickle (pickle.dump), not a file torch.save wrote, which torch.load cannot read; "
                 "where it was made, re-save the state dict with torch.save(state_dict, path) (unpickling a file you "
                 "do not trust runs its code)",
        scripted: "is a TorchScript archive (torch.jit.save: a compiled model, its code with its weights), not a "
                  "checkpoint of weights; give the checkpoint it was exported from, or re-save its weights where it "
                  f"was made: torch.save(torch.jit.load({str(scripted)!r}).state_dict(), 'weights.pt')",
    }
    for path, text in expected.items():
        with pytest.raises(CheckpointError) as ei:
            read_state_dict(path)
        msg = str(ei.value)
        assert msg.startswith(f"{path} {text}"), msg
        assert "corrupt" not in msg and "Download it again" not in msg and "weights_only" not in msg, msg
    # torch.save's own files, legacy (a pickle) and zip, still load; a damaged zip is still called corrupt
    legacy = tmp_path / "legacy.pt"
    torch.save(tiny_sd, legacy, _use_new_zipfile_serialization=False)
    assert read_state_dict(legacy).keys() == tiny_sd.keys()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(inner.read_bytes()[:-40])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        read_state_dict(cut)


def test_an_empty_weights_path_is_refused_not_the_working_folder(tmp_path, tiny_sd, monkeypatch, capsys):
    """weights="" (predict --weights "$UNSET") is refused as empty; it was read as "." and loaded the working
    folder's model.safetensors, or said ". is a directory without model.safetensors"."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in official_to_hf(tiny_sd).items()}, str(tmp_path / "model.safetensors"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"^no weights file given \(an empty path\); give a checkpoint "
                                                r"file, or 'random'$"):
        load_engine("dpt_tiny", "")
    import cv2
    import numpy as np

    from dpt_ros.tools import predict

    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((8, 8, 3), np.uint8))   # (no images is said before the weights)
    assert predict.main(["--variant", "dpt_tiny", "--weights", "", "x.png", "--out", str(tmp_path / "o")]) == 2
    assert "no weights file given" in capsys.readouterr().err


def test_wrappers_holding_other_tensors_or_other_keys(tmp_path, tiny_sd, tiny_ref):
    """The weights under "model" beside an epoch saved as a tensor, under "model" in a "model" wrapper, or in the one
    entry of a wrapper that holds tensors ({"net": ..., "epoch": 4}) load; they were refused as "not a state dict:
    non-tensor entries ['model']". Two such entries and none of the usual keys: refused, naming them."""
    p = tmp_path / "w.pt"
    for obj in ({"model": tiny_sd, "epoch": torch.tensor(3)}, {"model": {"model": tiny_sd}},
                {"net": tiny_sd, "epoch": 4}, {"model": tiny_sd, "model_ema": {"x": torch.zeros(1)}},
                {"state_dict": tiny_sd, "ema": {"x": torch.zeros(1)}}):
        torch.save(obj, p)
        assert torch.equal(load_engine("dpt_tiny", p).run(X)["inverse_depth"], tiny_ref), list(obj)
    torch.save({"net": tiny_sd, "ema": tiny_sd, "epoch": 4}, p)
    with pytest.raises(CheckpointError, match=r"a wrapper with tensors in several entries \('net', 'ema'\) and none "
                                              r"under 'model' / 'state_dict' / 'model_state_dict'"):
        read_state_dict(p)


def test_a_renamed_release_file_of_a_same_architecture_variant_is_refused_by_its_hash(tmp_path, tiny_sd, monkeypatch):
    """KITTI weights renamed (hybrid.pt) and loaded as the relative dpt_hybrid (same tensors, other outputs) were
    taken silently; the file's SHA-256, which starts with the KITTI release's prefix, now refuses it. Shown with a
    twin of dpt_tiny whose 'release' is the test file (the real files cannot be made here)."""
    from dpt_ros.model import VARIANTS

    p = official_file(tmp_path, tiny_sd, "renamed.pt")
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    twin = get_variant("dpt_tiny").replace(name="dpt_tiny_metric", checkpoint=f"dpt_tiny_metric-{digest[:8]}.pt",
                                           sha256_prefix=digest[:8], description="metric twin")
    monkeypatch.setitem(VARIANTS, twin.name, twin)
    with pytest.raises(CheckpointError) as ei:
        load_engine("dpt_tiny", p)
    assert str(ei.value) == (f"{p} is the release file of variant 'dpt_tiny_metric' (metric twin: its SHA-256 starts "
                             f"with {digest[:8]}, as dpt_tiny_metric-{digest[:8]}.pt), renamed, but variant 'dpt_tiny' "
                             f"was requested; set the variant to 'dpt_tiny_metric'.")
    from dpt_ros.tools import weights

    assert weights.main(["--verify", str(p), "--variant", "dpt_tiny"]) == 1   # as the node does
    assert load_engine(twin, p).variant is twin                  # as its own variant: loads
    assert load_engine("dpt_tiny", p, verify_hash=False)          # the hash checks off: not hashed
    other = official_file(tmp_path, random_state_dict("dpt_tiny", seed=12), "own.pt")
    assert load_engine("dpt_tiny", other)                         # another file: loads


def test_weights_holding_nan_or_inf_are_refused_naming_the_tensors(tmp_path, tiny_sd):
    bad = dict(tiny_sd)
    for k, value in (("scratch.output_conv.0.weight", float("nan")), ("pretrained.model.blocks.1.attn.qkv.bias",
                                                                       float("inf"))):
        bad[k] = tiny_sd[k].clone()
        bad[k].view(-1)[:3] = value
    torch.save(bad, tmp_path / "diverged.pt")
    with pytest.raises(CheckpointError, match="2 tensors hold NaN or infinite") as e:
        load_engine("dpt_tiny", tmp_path / "diverged.pt")   # (was taken: every output NaN)
    assert "pretrained.model.blocks.1.attn.qkv.bias (0 NaN, 3 infinite of 576)" in str(e.value)
    assert "scratch.output_conv.0.weight (3 NaN, 0 infinite of" in str(e.value)
    # the same in a Hugging Face file, in half precision
    from safetensors.torch import save_file

    save_file({k: v.half().contiguous() if v.is_floating_point() else v.contiguous()
               for k, v in official_to_hf(bad).items()}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"scratch.output_conv.0.weight \(3 NaN"):
        load_engine("dpt_tiny", tmp_path)


def test_a_snapshot_split_into_shards_loads_by_its_index(tmp_path, tiny_sd, tiny_ref):
    import json

    from safetensors.torch import save_file

    from dpt_ros.model.checkpoint import check_format

    hf = {k: v.clone().contiguous() for k, v in official_to_hf(tiny_sd).items()}
    names = list(hf)
    weight_map = {}
    for i, part in enumerate((names[:40], names[40:])):   # (the first shard holds dpt.* names only)
        shard = f"model-0000{i + 1}-of-00002.safetensors"
        save_file({k: hf[k] for k in part}, str(tmp_path / shard))
        weight_map.update(dict.fromkeys(part, shard))
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    # (was: "is a directory without model.safetensors or pytorch_model.bin; pass the checkpoint file itself")
    assert torch.equal(load_engine("dpt_tiny", tmp_path).run(X)["inverse_depth"], tiny_ref)
    assert torch.equal(load_engine("dpt_tiny", index).run(X)["inverse_depth"], tiny_ref)
    check_format(index)   # (what the node checks when depth.weights is set)
    (tmp_path / "model-00002-of-00002.safetensors").rename(tmp_path / "elsewhere.safetensors")
    with pytest.raises(FileNotFoundError, match="1 is not in .*: model-00002-of-00002.safetensors; download the whole"):
        load_engine("dpt_tiny", tmp_path)
    with pytest.raises(FileNotFoundError, match="model-00002-of-00002.safetensors"):
        check_format(index)


def test_a_position_embedding_of_another_grid_is_said_to_be_another_training_size(tmp_path, tiny_sd):
    from dpt_ros.model.backbone import resize_pos_embed

    key = "pretrained.model.pos_embed"
    sd = dict(tiny_sd)
    sd[key] = resize_pos_embed(tiny_sd[key], (32, 32), 24)   # (1, 1025, 192): fine-tuned at 512 x 512
    torch.save(sd, tmp_path / "at512.pt")
    with pytest.raises(CheckpointError) as e:
        load_engine("dpt_tiny", tmp_path / "at512.pt")
    text = str(e.value)   # (was only: "1 wrong shape: pretrained.model.pos_embed (1, 1025, 192) vs model (1, 577, 192)")
    assert "(1, 1025, 192) vs model (1, 577, 192)" in text
    assert "position embeddings of a 32 x 32 grid: a model trained or fine-tuned at 512 x 512 pixels" in text
    assert "resize_pos_embed(sd['pretrained.model.pos_embed'], (24, 24), 32)" in text and "input_size 512" in text
    sd[key] = resize_pos_embed(sd[key], (24, 24), 32)   # what the message says to do: it loads
    torch.save(sd, tmp_path / "at512.pt")
    load_engine("dpt_tiny", tmp_path / "at512.pt")
    sd[key] = torch.zeros(1, 1 + 24 * 32, 192)   # a grid that is not square
    with pytest.raises(CheckpointError, match="holds 768 grid positions .*, no square grid"):
        load_state_dict_into(DPT("dpt_tiny"), sd)


def foreign_state_dict(kind, sd):
    """dpt_tiny's tensors (``sd``, official names) under the key layout of a model this package does not run: a MiDaS
    v3.1 BEiT or Swin DPT, MiDaS v2.1 (a ResNeXt encoder under pretrained.layerN), Depth Anything (DINOv2 under
    pretrained.*, its head under depth_head.*), or transformers' DPT on a BEiT backbone (backbone.*)."""
    enc = {k: t for k, t in sd.items() if k.startswith("pretrained.model.")}
    dec = {k: t for k, t in sd.items() if not k.startswith("pretrained.model.")}
    if kind == "beit":   # no position embedding; relative position biases, q/v biases and layer scales per block
        out = {k: t for k, t in sd.items() if k != "pretrained.model.pos_embed" and not k.endswith("attn.qkv.bias")}
        for i in range(12):
            b = f"pretrained.model.blocks.{i}."
            out.update({b + "attn.q_bias": torch.zeros(192), b + "attn.v_bias": torch.zeros(192),
                        b + "attn.relative_position_bias_table": torch.randn(732, 3), b + "gamma_1": torch.ones(192)})
        return out
    if kind == "swin":   # stages of blocks under layers.N
        return {**dec, **{k.replace("pretrained.model.blocks.", "pretrained.model.layers.0.blocks."): t
                          for k, t in enc.items() if not k.endswith("pos_embed")}}
    if kind == "midas_v21":   # a ResNeXt under pretrained.layer1..4, MiDaS's decoder under scratch.*
        return {**dec, "pretrained.layer1.0.weight": torch.randn(64, 3, 7, 7),
                "pretrained.layer4.0.conv1.weight": torch.randn(2048, 1024, 1, 1)}
    if kind == "depth_anything":
        return {**{"pretrained." + k[len("pretrained.model."):]: t for k, t in enc.items()},
                **{"depth_head." + k: t for k, t in dec.items()}}
    assert kind == "hf_beit"
    hf = official_to_hf({k: t for k, t in sd.items() if k != "pretrained.model.pos_embed"})
    out = {k.replace("dpt.embeddings.", "backbone.embeddings.").replace("dpt.encoder.", "backbone.encoder."): t
           for k, t in hf.items()}
    out["backbone.encoder.layer.0.attention.attention.relative_position_bias.relative_position_bias_table"] = \
        torch.randn(732, 3)
    return out


@pytest.mark.parametrize("kind,what,variant", [
    ("beit", "a DPT with a BEiT encoder (MiDaS v3.1 dpt_beit_*.pt", "dpt_large"),
    ("swin", "a DPT with a Swin / Swin v2 encoder (MiDaS v3.1", "dpt_large"),
    ("midas_v21", "a MiDaS v2.1 model (midas_v21-*.pt", "dpt_hybrid"),
    ("depth_anything", "a Depth Anything model (DINOv2 encoder", "dpt_large"),
    ("hf_beit", "a DPT with a BEiT encoder (MiDaS v3.1 dpt_beit_*.pt, or transformers' Intel/dpt-beit-*", "dpt_large"),
])
def test_a_model_with_another_encoder_is_named_with_the_file_to_use(tmp_path, tiny_sd, kind, what, variant):
    """A MiDaS v3.1 BEiT checkpoint given as dpt_large was a list of 25 missing and 144 unexpected keys; a Swin or MiDaS
    v2.1 one 'holds a different DPT (vit backbone, depth)' (neither is a ViT), Depth Anything 'a DPT under
    depth_head. beside other tensors (a training module's loss weights ...)'. Each is now said to be what it is, that
    this package does not run it, and which file to use for the variant."""
    p = tmp_path / f"{kind}.pt"
    torch.save(foreign_state_dict(kind, tiny_sd), p)
    v = get_variant(variant)
    with pytest.raises(CheckpointError) as ei:
        load_checkpoint(p, variant)
    text = str(ei.value)
    assert text.startswith(f"{p} is {what}"), text
    assert "which this package does not run: it runs DPT-Large (ViT-L/16: dpt_large, dpt_large_ade20k) and " \
           "DPT-Hybrid (ResNet-50 + ViT-B/16" in text
    assert text.endswith(f"For {variant} use {v.checkpoint} ({v.url}) or MiDaS v3's {v.alt_checkpoints[0]} or the "
                         f"Hugging Face model {v.hf_id}."), text
    assert describe_state_dict(foreign_state_dict(kind, tiny_sd))["backbone"] == kind.replace("hf_", "")
    assert foreign_state_dict(kind, tiny_sd) and not matching_variants(foreign_state_dict(kind, tiny_sd))


def test_a_folder_given_for_the_weights_names_what_to_give_instead(tmp_path, tiny_sd, tiny_ref):
    """depth.weights:=weights/ (the folder the downloads went into) or Hugging Face's cache folder
    (~/.cache/huggingface/hub/models--Intel--dpt-large) was told only 'a directory without model.safetensors or
    pytorch_model.bin ...; pass the checkpoint file itself'. It now names the checkpoint files in the folder, or the
    cache's snapshot that holds the weights (the revision refs/main names), and that path loads."""
    from safetensors.torch import save_file

    folder = tmp_path / "my weights"
    folder.mkdir()
    torch.save(tiny_sd, folder / "dpt_tiny.pt")
    torch.save(tiny_sd, folder / "b.pth")
    (folder / "notes.txt").write_text("downloaded today")
    with pytest.raises(FileNotFoundError) as ei:
        load_engine("dpt_tiny", folder)
    assert str(ei.value).endswith(f"; it holds b.pth, dpt_tiny.pt: give the checkpoint file itself, e.g. {folder / 'b.pth'}")
    cache = tmp_path / "hub" / "models--Intel--dpt-large"
    for d in ("blobs", "refs", "snapshots/0ld", "snapshots/c0ffee"):
        (cache / d).mkdir(parents=True)
    (cache / "refs" / "main").write_text("c0ffee")
    (cache / "snapshots" / "0ld" / "config.json").write_text("{}")   # an older revision, its weights not fetched
    save_file({k: v.clone().contiguous() for k, v in official_to_hf(tiny_sd).items()}, str(cache / "blobs" / "9a3e"))
    (cache / "snapshots" / "c0ffee" / "model.safetensors").symlink_to(cache / "blobs" / "9a3e")
    with pytest.raises(FileNotFoundError) as ei:
        load_engine("dpt_tiny", cache)
    snap = cache / "snapshots" / "c0ffee"
    assert str(ei.value).endswith(f"; it is a Hugging Face cache folder, whose weights are in a snapshot: give the "
                                  f"snapshot folder, e.g. {snap}")
    assert torch.equal(load_engine("dpt_tiny", snap).run(X)["inverse_depth"], tiny_ref)
    (snap / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="a Hugging Face cache folder without downloaded weights in its "
                                                "snapshots/ .*download model.safetensors too"):
        load_engine("dpt_tiny", cache)


def test_hugging_face_hybrid_depth_weights_are_refused_as_a_metric_variant(tmp_path, tiny_hybrids, capsys):
    """Intel/dpt-hybrid-midas (relative inverse depth, the only Hugging Face DPT-Hybrid depth release) given as
    dpt_hybrid_kitti or dpt_hybrid_nyu loaded and ran (the same tensors; no release file's SHA-256 to tell them by):
    relative values turned into wrong metres. It is refused now, naming the variant it is; a file weights --convert
    made as the metric variant (its variant recorded) still loads as it, and the relative variant takes the file."""
    from safetensors.torch import save_file

    from dpt_ros.tools import weights

    rel = tiny_hybrids["dpt_hybrid"]
    snap = tmp_path / "dpt-hybrid-midas"
    snap.mkdir()
    (snap / "config.json").write_text('{"architectures": ["DPTForDepthEstimation"], "is_hybrid": true}')
    hf = {k: t.contiguous().clone() for k, t in official_to_hf(random_state_dict(rel, seed=3)).items()}
    save_file(hf, str(snap / "model.safetensors"), metadata={"format": "pt"})   # (as transformers saves it)
    torch.save(hf, tmp_path / "pytorch_model.bin")
    for given in (snap, tmp_path / "pytorch_model.bin"):
        for metric in ("dpt_hybrid_kitti", "dpt_hybrid_nyu"):
            v = tiny_hybrids[metric]
            with pytest.raises(CheckpointError) as ei:
                load_checkpoint(given, metric)
            path = snap / "model.safetensors" if given == snap else given
            assert str(ei.value) == (
                f"{path} holds Hugging Face (transformers) DPT weights of the architecture whose only Hugging Face "
                f"release is Intel/dpt-hybrid-midas, variant 'dpt_hybrid' ({rel.description}); variant {metric!r} "
                f"({v.description}) has no Hugging Face release, and run as it these weights would give wrong values. "
                f"Set the variant to 'dpt_hybrid', or for {metric} use {v.checkpoint} ({v.url}). (Weights of {metric} "
                f"converted into a .safetensors file record the variant, and load as it: python -m "
                f"dpt_ros.tools.weights --convert {v.checkpoint} DST --variant {metric}; converted so, these weights "
                f"would still be dpt_hybrid's.)")
        assert load_checkpoint(given, "dpt_hybrid").load_report.source_format == "huggingface"
    # the snapshot given to --convert as the metric variant (what the old words, '--convert SRC DST --variant
    # dpt_hybrid_kitti record the variant', seemed to ask for): refused, saying which file to convert instead
    capsys.readouterr()
    assert weights.main(["--convert", str(snap), str(tmp_path / "k.safetensors"), "--variant", "dpt_hybrid_kitti"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"FAILED: {snap / 'model.safetensors'} holds Hugging Face (transformers) DPT weights"), err
    assert err.rstrip().endswith("--convert dpt_hybrid_kitti-cb926ef4.pt DST --variant dpt_hybrid_kitti; converted "
                                 "so, these weights would still be dpt_hybrid's.)"), err
    assert not (tmp_path / "k.safetensors").exists()
    # the way out the message gives: KITTI weights (official names) converted as dpt_hybrid_kitti load as it
    torch.save(random_state_dict(tiny_hybrids["dpt_hybrid_kitti"], seed=4), tmp_path / "kitti.pt")
    assert weights.main(["--convert", str(tmp_path / "kitti.pt"), str(tmp_path / "kitti.safetensors"),
                         "--variant", "dpt_hybrid_kitti"]) == 0
    assert load_checkpoint(tmp_path / "kitti.safetensors", "dpt_hybrid_kitti").variant.name == "dpt_hybrid_kitti"


def lightning_checkpoint(sd, hyper_parameters):
    """What PyTorch Lightning's ModelCheckpoint saves (epoch=3-step=120.ckpt): the LightningModule's state dict (the
    DPT under its attribute, 'model.') beside the training loop's state and the module's hyper_parameters."""
    return {"epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0",
            "state_dict": {"model." + k: v for k, v in sd.items()},
            "loops": {"fit_loop": {"epoch_progress": {"total": {"ready": 4, "completed": 3}}}},
            "callbacks": {"ModelCheckpoint{'monitor': 'val_loss'}": {"best_model_score": torch.tensor(0.3),
                                                                    "dirpath": "/runs/ckpt"}},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-4, "params": [0]}]}],
            "lr_schedulers": [], "hparams_name": "kwargs", "hyper_parameters": hyper_parameters}


def test_a_lightning_checkpoint_loads_and_one_holding_objects_says_how_to_re_save_it(tmp_path, tiny_sd, tiny_ref):
    """A Lightning .ckpt whose hyper_parameters hold an argparse.Namespace (a training script's args) was told 'the
    file holds Python objects other than tensors and plain containers ... Re-save only the state dict', not that it
    is a Lightning checkpoint nor how; it now says so, with the line that re-saves its weights. One with plain
    hyper_parameters loads (its 'model.' prefix taken off) and gives the reference's outputs."""
    import argparse

    plain = tmp_path / "epoch=3-step=120.ckpt"
    torch.save(lightning_checkpoint(tiny_sd, {"lr": 1e-4, "variant": "dpt_tiny"}), plain)
    assert torch.equal(load_engine("dpt_tiny", plain).run(X)["inverse_depth"], tiny_ref)
    args = tmp_path / "epoch=4-step=150.ckpt"
    torch.save(lightning_checkpoint(tiny_sd, {"args": argparse.Namespace(lr=1e-4)}), args)
    with pytest.raises(CheckpointError) as ei:
        load_engine("dpt_tiny", args)
    assert str(ei.value) == (
        f"{args} is a PyTorch Lightning checkpoint that holds, beside its weights, Python objects other than tensors "
        f"and plain containers (in its hyper_parameters or callbacks state), which are not unpickled here (torch.load "
        f"weights_only=True). Where it was trained, with the code that defines its module, re-save its weights alone "
        f"and give that file: torch.save(YourModule.load_from_checkpoint({str(args)!r}).state_dict(), 'weights.pt') "
        f"(the module attribute's prefix before the DPT's names, e.g. 'model.', is taken off when it is loaded). "
        f"Detail: WeightsUnpickler error: Unsupported global: GLOBAL argparse.Namespace was not an allowed global by "
        f"default.")
    # a file that is no Lightning checkpoint keeps the general words
    torch.save({"model": tiny_sd, "args": argparse.Namespace(lr=1e-4)}, tmp_path / "train.pt")
    with pytest.raises(CheckpointError, match="refusing to unpickle: .* Re-save only the state dict"):
        load_engine("dpt_tiny", tmp_path / "train.pt")


def test_a_release_file_saved_under_another_release_files_name_is_named(tmp_path, tiny_sd, monkeypatch):
    """README's curl line with only the URL changed (DPT-Large's download saved as dpt_hybrid-midas-501f0c75.pt) was
    told 'SHA-256 ... does not start with 501f0c75: the file is corrupt or truncated ... Download it again', which
    downloads the same file again. A digest that starts with another release's prefix now names that release file,
    to rename it to, and where the named one is."""
    from dpt_ros.model import VARIANTS

    p = official_file(tmp_path, tiny_sd, "download.pt")
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    large = VARIANTS["dpt_large"]   # (this file stands for DPT-Large's release: its prefix is the file's digest)
    monkeypatch.setitem(VARIANTS, "dpt_large", large.replace(sha256_prefix=digest[:8],
                                                             checkpoint=f"dpt_large-midas-{digest[:8]}.pt"))
    saved = p.rename(tmp_path / "dpt_hybrid-midas-501f0c75.pt")
    with pytest.raises(CheckpointError) as ei:
        load_engine("dpt_hybrid", saved)
    assert str(ei.value) == (
        f"{saved}: its SHA-256 starts with {digest[:8]}, not 501f0c75 (from the file name): it is "
        f"dpt_large-midas-{digest[:8]}.pt, the release file of variant 'dpt_large' ({large.description}), saved under "
        f"another name. Rename it to dpt_large-midas-{digest[:8]}.pt (and set the variant to 'dpt_large' to run it); "
        f"for dpt_hybrid download {get_variant('dpt_hybrid').url}.")
    monkeypatch.setitem(VARIANTS, "dpt_large", large)   # a digest of no release: corrupt, as before
    with pytest.raises(CheckpointError, match="does not start with 501f0c75 .*: the file is corrupt or truncated"):
        load_engine("dpt_hybrid", saved)
