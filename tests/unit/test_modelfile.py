from pathlib import Path

import h5py
import pytest

from inferq.core.constants import H5_META_ATTR, H5_META_SCHEMA_ATTR
from inferq.core.modelfile import RegressorMeta, file_version, read_meta, write_meta
from inferq.core.scaling import MinMax
from inferq.errors import ModelFileError

META = RegressorMeta(
    features=("a", "b"),
    feature_scaler=MinMax(min=(0.0, -1.0), scale=(0.5, 0.25)),
    target="y",
    target_scaler=MinMax(min=(-0.1159,), scale=(0.0000036968,)),
)


def _h5(path: Path) -> Path:
    with h5py.File(path, "w") as f:
        f.create_group("model_weights")
    return path


def test_meta_round_trips_through_hdf5_attributes(tmp_path: Path) -> None:
    path = _h5(tmp_path / "m.h5")
    write_meta(path, META)
    assert read_meta(path) == META
    with h5py.File(path, "r") as f:
        assert f.attrs[H5_META_SCHEMA_ATTR] == 1


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        read_meta(tmp_path / "nope.h5")


def test_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "m.h5"
    path.write_bytes(b"this is not a model")
    with pytest.raises(ModelFileError, match="not a readable HDF5"):
        read_meta(path)


def test_truncated_hdf5(tmp_path: Path) -> None:
    path = _h5(tmp_path / "m.h5")
    write_meta(path, META)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelFileError, match=str(path)):
        read_meta(path)


def test_no_metadata_points_to_import_model(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="import-model"):
        read_meta(_h5(tmp_path / "m.h5"))


def test_no_weights(tmp_path: Path) -> None:
    path = tmp_path / "m.h5"
    h5py.File(path, "w").close()
    write_meta(path, META)
    with pytest.raises(ModelFileError, match="no Keras weights"):
        read_meta(path)


def test_wrong_schema_version_and_bad_json(tmp_path: Path) -> None:
    path = _h5(tmp_path / "m.h5")
    write_meta(path, META)
    with h5py.File(path, "a") as f:
        f.attrs[H5_META_SCHEMA_ATTR] = 99
    with pytest.raises(ModelFileError, match="schema 99"):
        read_meta(path)
    with h5py.File(path, "a") as f:
        f.attrs[H5_META_SCHEMA_ATTR] = 1
        f.attrs[H5_META_ATTR] = '{"features": []}'
    with pytest.raises(ModelFileError, match="invalid inferq_meta"):
        read_meta(path)


def test_meta_consistency_is_checked() -> None:
    with pytest.raises(ValueError, match="one entry per feature"):
        RegressorMeta(
            features=("a",),
            feature_scaler=META.feature_scaler,
            target="y",
            target_scaler=META.target_scaler,
        )
    with pytest.raises(ValueError, match="prescaled"):
        RegressorMeta(
            features=("a",), feature_scaler=None, target="y", target_scaler=META.target_scaler
        )


def test_dollars_follow_the_course_formula() -> None:
    assert META.to_dollars([0.25])[0] == pytest.approx((0.25 + 0.1159) / 0.0000036968)


def test_version_is_a_content_hash(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"x" * 10)
    b.write_bytes(b"x" * 10)
    assert file_version(a) == file_version(b) and len(file_version(a)) == 12
    b.write_bytes(b"y" * 10)
    assert file_version(a) != file_version(b)
