"""A flowcore file that is damaged, foreign or altered is refused with a FileError naming the
path and the fault, before anything is built; a save is atomic.

The files are written from parts (:func:`flowcore.io.write`), so no backend is needed:
:func:`flowcore.io.read` does every check a load does before building the model.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from selected_backends import BACKENDS

import flowcore as fc
from flowcore import file_format
from flowcore.io import read, read_tree, write


def _spec() -> fc.SequenceINN:
    return fc.SequenceINN(
        fc.ActNorm(),
        fc.AllInOneBlock(subnet=fc.MLP(hidden=(8,), zero_init_last=False)),
        fc.PermuteRandom(),  # an int64 index buffer
        conditions=[None, 0, None],
    )


def _params(dtype: str = "float32") -> dict[str, np.ndarray]:
    tree = fc.build_tree(_spec(), [(3,)], [(2,)])
    params = fc.initial_params(tree, seed=0)
    return {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in params.items()}


def _write(path, params=None, dtype="float32", spec=None) -> None:
    write(path, spec or _spec(), [(3,)], [(2,)], dtype, params or _params(dtype))


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "flow.fc"
    _write(path)
    return path


def _rewrite_metadata(path, change, resum: bool = False) -> None:
    """Rewrite the file's safetensors metadata through ``change``; ``resum``: with the
    checksums of the changed header, as a writer of such a header would make them."""
    import safetensors.numpy
    from safetensors import safe_open

    with safe_open(os.fspath(path), framework="np") as f:
        metadata = change(dict(f.metadata()))
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if resum:
        metadata[file_format.CHECKSUMS] = file_format.checksums(metadata["flowcore"], tensors)
    safetensors.numpy.save_file(tensors, path, metadata=metadata)


def test_a_good_file_reads_back_exactly(good):
    header, params = read(good)
    assert header["version"] == file_format.VERSION and header["dtype"] == "float32"
    for name, value in _params().items():
        assert params[name].dtype == value.dtype
        np.testing.assert_array_equal(params[name], value)


def test_a_flipped_bit_in_a_weight_is_found(good):
    data = bytearray(good.read_bytes())
    data[-3] ^= 0x40  # inside the last tensor's bytes: an exponent bit of a float32
    good.write_bytes(bytes(data))
    with pytest.raises(fc.FileError, match=r"flow\.fc: tensor '.+' does not match its checksum"):
        read(good)


def test_a_changed_digit_in_the_spec_is_found(good):
    def widen(metadata):
        header = metadata["flowcore"]
        assert '"hidden": [8]' in header
        return {**metadata, "flowcore": header.replace('"hidden": [8]', '"hidden": [9]')}

    _rewrite_metadata(good, widen)
    with pytest.raises(fc.FileError, match=r"flow\.fc: the header .* does not match its checksum"):
        read(good)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[: len(data) // 2], "not a readable safetensors file"),
        (lambda data: data[:5], "not a readable safetensors file"),
        (lambda data: b"", "the file is empty"),
        (lambda data: b"PK\x03\x04 not a model at all" * 4, "not a readable safetensors file"),
    ],
    ids=["truncated", "truncated-in-length", "empty", "garbage"],
)
def test_truncated_empty_and_garbage_files_name_the_path(good, damage, message):
    good.write_bytes(damage(good.read_bytes()))
    with pytest.raises(fc.FileError, match=rf"flow\.fc: {message}"):
        read(good)


def test_a_directory_or_a_missing_file_is_named(tmp_path):
    with pytest.raises(fc.FileError, match="is a directory, not a flowcore file"):
        read(tmp_path)
    with pytest.raises(fc.FileError, match=r"nothing\.fc: no such file"):
        fc.load(tmp_path / "nothing.fc")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h: "{not json", "the header is not valid JSON"),
        (lambda h: json.dumps([1, 2]), "the header must be a JSON object, got list"),
        (lambda h: json.dumps({k: v for k, v in h.items() if k != "spec"}), r"lacks \['spec'\]"),
        (lambda h: json.dumps({**h, "version": 7}), "unsupported flowcore file version 7"),
        (lambda h: json.dumps({**h, "inputs": [[-3]]}), "'inputs' must be a list of shapes"),
        (lambda h: json.dumps({**h, "conditions": [[2.5]]}), "'conditions' must be a list"),
        (lambda h: json.dumps({**h, "dtype": "int8"}), "'dtype' must be one of"),
        (lambda h: json.dumps({**h, "spec": "SequenceINN"}), "'spec' must be an object"),
    ],
    ids=["not-json", "not-object", "no-spec", "version", "inputs", "conditions", "dtype", "spec"],
)
def test_the_header_schema_is_checked_before_anything_is_built(good, change, message):
    _rewrite_metadata(
        good, lambda m: {**m, "flowcore": change(json.loads(m["flowcore"]))}, resum=True
    )
    with pytest.raises(fc.FileError, match=rf"flow\.fc: .*{message}"):
        read(good)


def test_a_damaged_header_is_reported_as_corrupted(good):
    _rewrite_metadata(good, lambda m: {**m, "flowcore": m["flowcore"].replace("3", "4", 1)})
    with pytest.raises(fc.FileError, match="the header .* does not match its checksum"):
        read(good)


def test_a_file_without_its_checksums_is_refused(good):
    _rewrite_metadata(good, lambda m: {"flowcore": m["flowcore"]})
    with pytest.raises(fc.FileError, match="the file has no checksums"):
        read(good)


@pytest.mark.parametrize("stored", ["float16", "float64"])
def test_float_tensors_in_another_dtype_than_the_model_are_refused(tmp_path, stored):
    params = {k: v.astype(stored) if v.dtype.kind == "f" else v for k, v in _params().items()}
    path = tmp_path / "flow.fc"
    _write(path, params=params, dtype="float32")
    with pytest.raises(fc.FileError, match=f"is stored as {stored} in a float32 model"):
        read(path)


def test_a_top_level_spec_that_is_not_a_transform_is_refused(tmp_path):
    path = tmp_path / "mlp.fc"
    write(path, fc.MLP(hidden=(4,)), [(3,)], [], "float32", {})  # type: ignore[arg-type]
    with pytest.raises(fc.FileError, match=r"mlp\.fc: the top-level spec is a MLP"):
        fc.load(path, backend="never-reached")


@pytest.mark.parametrize("name", BACKENDS)
def test_integer_weights_for_float_parameters_are_a_file_error_on_load(tmp_path, name):
    params = {k: v.astype(np.int8) if v.dtype.kind == "f" else v for k, v in _params().items()}
    path = tmp_path / "flow.fc"
    _write(path, params=params)  # no float tensor left, so read() finds no dtype to compare
    with pytest.raises(fc.FileError, match=r"flow\.fc: .*must be floating point, got int8"):
        fc.load(path, backend=name)


def test_saving_over_a_file_replaces_it_whole_or_not_at_all(good, monkeypatch):
    before = good.read_bytes()

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _write(good, params={k: v + 1 if v.dtype.kind == "f" else v for k, v in _params().items()})
    assert good.read_bytes() == before  # the old model, intact
    assert sorted(p.name for p in good.parent.iterdir()) == ["flow.fc"]  # no temporary left
    monkeypatch.undo()
    _write(good, params={k: v + 1 if v.dtype.kind == "f" else v for k, v in _params().items()})
    assert good.read_bytes() != before and read(good)[0]["version"] == file_format.VERSION


def test_saving_to_a_directory_or_a_missing_folder_is_named(tmp_path):
    with pytest.raises(fc.FileError, match="is a directory; give a file name"):
        _write(tmp_path)
    with pytest.raises(fc.FileError, match="does not exist"):
        _write(tmp_path / "absent" / "flow.fc")


_GOOD_BYTES: dict[str, bytes] = {}


def _good_bytes(tmp_path_factory) -> bytes:
    if "file" not in _GOOD_BYTES:
        path = tmp_path_factory.mktemp("fuzz") / "flow.fc"
        _write(path)
        _GOOD_BYTES["file"] = path.read_bytes()
    return _GOOD_BYTES["file"]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzz_every_damaged_file_is_a_file_error(tmp_path_factory, data):
    """Bit flips anywhere (header, metadata, tensors), cuts, insertions and overwrites of a
    good file: each one is a FileError, never another exception; a file that still reads
    (whitespace changed in safetensors' own JSON) holds exactly the original model."""
    original = _good_bytes(tmp_path_factory)
    damage = data.draw(st.sampled_from(["flip", "cut", "insert", "overwrite"]))
    buf = bytearray(original)
    if damage == "flip":
        for _ in range(data.draw(st.integers(1, 3))):
            at = data.draw(st.integers(0, len(buf) - 1))
            buf[at] ^= 1 << data.draw(st.integers(0, 7))
    elif damage == "cut":
        del buf[data.draw(st.integers(0, len(buf) - 1)) :]
    else:
        at = data.draw(st.integers(0, len(buf) - 1))
        chunk = data.draw(st.binary(min_size=1, max_size=16))
        if damage == "insert":
            buf[at:at] = chunk
        else:
            buf[at : at + len(chunk)] = chunk
    if bytes(buf) == original:
        return  # an overwrite with the same bytes is no damage
    path = tmp_path_factory.mktemp("damaged") / "flow.fc"
    path.write_bytes(bytes(buf))
    try:
        header, params = read(path)
    except fc.FileError as err:
        assert str(err).startswith(f"{path}: ")
        return
    good_header, good_params = read_bytes_as_model(tmp_path_factory, original)
    assert header == good_header and params.keys() == good_params.keys()
    for name, value in good_params.items():
        assert params[name].dtype == value.dtype
        np.testing.assert_array_equal(params[name], value)


def read_bytes_as_model(tmp_path_factory, data: bytes):
    path = tmp_path_factory.mktemp("original") / "flow.fc"
    path.write_bytes(data)
    return read(path)


def _raw_file(path, header: dict, tensors: dict) -> None:
    """A file written as a buggy or hostile writer would: any header, with valid checksums."""
    import safetensors.numpy

    text = json.dumps(header)
    metadata = {"flowcore": text, file_format.CHECKSUMS: file_format.checksums(text, tensors)}
    safetensors.numpy.save_file(tensors, path, metadata=metadata)


#: what a mutated option may become: wrong types, signs, sizes, non-finite numbers, shapes
_JSON_VALUES = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.none(),
    st.booleans(),
    st.lists(st.one_of(st.integers(-3, 64), st.floats(-2, 2), st.text(max_size=2)), max_size=3),
    st.dictionaries(st.sampled_from(["type", "config", "a"]), st.integers(), max_size=2),
)


def _option_paths(config, prefix=()):
    """Every place in a spec config that holds an option's value."""
    if isinstance(config, dict):
        for key, value in config.items():
            if key != "type":
                yield (*prefix, key)
                yield from _option_paths(value, (*prefix, key))
    elif isinstance(config, list):
        for i, value in enumerate(config):
            yield (*prefix, i)
            yield from _option_paths(value, (*prefix, i))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzz_every_malformed_spec_in_a_file_is_a_file_error(tmp_path_factory, data):
    """One option of a saved spec set to a random JSON value (checksums made to match):
    the file's model is either checked and valid, or refused with a FileError."""
    tensors = {k: np.require(v, requirements="C") for k, v in _params().items()}
    header = {
        "format": "flowcore",
        "version": file_format.VERSION,
        "spec": fc.serialize.spec_to_config(_spec()),
        "inputs": [[3]],
        "conditions": [[2]],
        "dtype": "float32",
    }
    where = data.draw(st.sampled_from(list(_option_paths(header["spec"]))))
    value = data.draw(_JSON_VALUES)
    holder = header["spec"]
    for key in where[:-1]:
        holder = holder[key]
    holder[where[-1]] = value
    path = tmp_path_factory.mktemp("spec") / "flow.fc"
    _raw_file(path, header, tensors)
    try:
        tree, params = read_tree(path)
    except fc.FileError as err:
        assert str(err).startswith(f"{path}: ")
        return
    assert set(params) == set(tree.param_specs())  # accepted: a model whose weights fit
