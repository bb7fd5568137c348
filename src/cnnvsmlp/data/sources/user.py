"""A user's data set: ``tfds:NAME``, any TFDS image classification set, or ``folder:PATH``."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np

from cnnvsmlp.data.sources import DataError, DatasetSpec, RawData

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TEST_FRACTION = 0.2  # of each class, when the data set has no test split
MAX_CLASSES = 256
SPLIT_SEED = 0  # the stratified test split and the order of a folder's images


def describe(name: str) -> DatasetSpec:
    """The spec of ``tfds:NAME`` or ``folder:PATH``, from what its source says."""
    kind, _, where = name.partition(":")
    if kind == "tfds":
        info = _builder(name, where).info
        image, label = _image_and_label(name, info)
        shape = info.features[image].shape
        if None in shape:
            raise DataError(
                f"{name}: its images have no fixed size ({shape}); use a data set of one image size"
            )
        counts = {s: info.splits[s].num_examples for s in ("train", "test") if s in info.splits}
        counts = counts if len(counts) == 2 else {}
        classes, shape = info.features[label].names, tuple(shape)
    else:
        splits, classes = _splits(name, where)
        counts = {s: sum(map(len, splits.get(s, {}).values())) for s in ("train", "test")}
        if "all" in splits:
            n_test = sum(_n_test(len(v)) for v in splits["all"].values())
            counts = {"train": sum(map(len, splits["all"].values())) - n_test, "test": n_test}
        shape, where = None, ""
    if len(classes) > MAX_CLASSES:
        raise DataError(
            f"{name}: {len(classes)} classes; at most {MAX_CLASSES} (labels are stored as uint8)"
        )
    return DatasetSpec(name, tuple(classes), counts, tfds_name=where, image_shape=shape)


def read_user(spec: DatasetSpec, data_dir: str | None, download: bool) -> RawData:
    """Read a user's data set's train and test splits; ``data_dir`` and ``download`` are TFDS's."""
    kind, _, where = spec.name.partition(":")
    if kind == "tfds":
        return _read_tfds(spec, where, data_dir, download)
    if where.startswith("gs://"):
        from cnnvsmlp import storage

        with tempfile.TemporaryDirectory() as tmp:
            storage.fetch_dir(where, tmp)
            return _read_folder(spec, Path(tmp))
    return _read_folder(spec, Path(where))


def _builder(name: str, tfds_name: str, data_dir: str | None = None):
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(tfds_name, data_dir=data_dir)
    except Exception as err:  # noqa: BLE001 - TFDS raises several types for unknown names
        raise DataError(
            f"{name}: TFDS has no data set {tfds_name!r} ({_why(err)}); "
            "check the name in the TFDS catalog (tfds.list_builders())"
        ) from None


def _why(err: Exception) -> str:
    return f"{err.__class__.__name__}: {(str(err).strip().splitlines() or [''])[0][:160]}"


def _image_and_label(name: str, info) -> tuple[str, str]:
    import tensorflow_datasets as tfds

    features = info.features
    keys = info.supervised_keys if isinstance(info.supervised_keys, tuple) else None
    if not keys or len(keys) != 2 or not all(isinstance(k, str) for k in keys):
        keys = ("image", "label")
    kinds = zip(keys, (tfds.features.Image, tfds.features.ClassLabel), strict=True)
    if not all(key in features and isinstance(features[key], kind) for key, kind in kinds):
        raise DataError(
            f"{name}: not an image classification data set (features "
            f"{', '.join(sorted(features.keys()))}); name one with an image and a class label"
        )
    return keys


def _read_tfds(spec: DatasetSpec, tfds_name: str, data_dir: str | None, download: bool) -> RawData:
    import tensorflow_datasets as tfds

    builder = _builder(spec.name, tfds_name, data_dir)
    keys = _image_and_label(spec.name, builder.info)
    try:
        if download:
            builder.download_and_prepare()
        splits = {}
        # No split info (TFDS has not prepared it here): ask for test, as for train.
        has_test = "test" in builder.info.splits or not builder.info.splits
        for split in ("train", "test") if has_test else ("train",):
            records = builder.as_dataset(split=split, shuffle_files=False).batch(1024)
            batches = list(tfds.as_numpy(records))
            splits[split] = tuple(np.concatenate([b[key] for b in batches]) for key in keys)
    except Exception as err:  # noqa: BLE001 - TFDS and TensorFlow raise many types
        raise DataError(
            f"{spec.name}: TFDS cannot read it ({_why(err)}); "
            "set source.tfds_data_dir to a data_dir that holds it, or source.download=true"
        ) from None
    if "test" not in splits:
        splits["train"], splits["test"] = _stratified(*splits["train"])
    return _raw(splits, f"tfds:{tfds_name}", {"builder": f"{tfds_name} {builder.info.version}"})


def _splits(name: str, root: str) -> tuple[dict[str, dict[str, list[str]]], list[str]]:
    """The image files of each split by class (``{split: {class: [relative path]}}``), classes."""
    from cnnvsmlp import storage

    if not root.startswith("gs://") and not Path(root).is_dir():
        raise DataError(f"folder:{root}: no such folder; give a folder of class subfolders")
    files = sorted(n for n in storage.names(root) if n.lower().endswith(IMAGE_SUFFIXES))
    official = {"train", "test"} <= {f.split("/", 1)[0] for f in files if "/" in f}
    out: dict[str, dict[str, list[str]]] = {}
    for f in files:
        parts = f.split("/") if official else ["all", *f.split("/")]
        if len(parts) == 3 and (parts[0] in ("train", "test") or not official):
            out.setdefault(parts[0], {}).setdefault(parts[1], []).append(f)
    classes = sorted(out.get("train", out.get("all", {})))
    if len(classes) < 2:
        found = f"one class ({classes[0]})" if classes else "no class subfolder with images"
        raise DataError(
            f"{name}: {found}; give one subfolder of PNG or JPEG images per class, "
            "at least two (optionally inside train/ and test/)"
        )
    extra = sorted(set(out.get("test", {})) - set(classes))  # none without train/ and test/
    if extra:
        raise DataError(
            f"{name}: test/{extra[0]} is no class of train/; give train/ the same classes"
        )
    return out, classes


def _n_test(n: int) -> int:
    return max(1, round(n * TEST_FRACTION)) if n >= 2 else 0


def _read_folder(spec: DatasetSpec, root: Path) -> RawData:
    splits, _ = _splits(spec.name, str(root))
    index = {c: i for i, c in enumerate(spec.classes)}
    digest = hashlib.sha256()
    shape: dict = {}  # the first image's shape and file
    arrays = {}
    for split, by_class in splits.items():
        files = [(f, index[c]) for c in sorted(by_class) for f in by_class[c]]
        images = np.stack([_read_image(spec.name, root, f, shape, digest) for f, _ in files])
        arrays[split] = (images, np.array([label for _, label in files], dtype=np.int64))
    if "all" in arrays:
        arrays["train"], arrays["test"] = _stratified(*arrays.pop("all"))
    else:  # class by class on disk; validation is cut from the end, so mix the classes
        order = np.random.default_rng(SPLIT_SEED).permutation(len(arrays["train"][1]))
        arrays["train"] = (arrays["train"][0][order], arrays["train"][1][order])
    return _raw(arrays, spec.name, {"images": digest.hexdigest()})


def _read_image(name: str, root: Path, relative: str, shape: dict, digest) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    path = root / relative
    digest.update(relative.encode() + b"\0" + path.read_bytes())
    try:
        with Image.open(path) as image:
            if image.mode == "P":
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
            pixels = np.asarray(image)
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(
            f"{name}: cannot read image {relative} ({err.__class__.__name__}); replace or remove it"
        ) from None
    if pixels.dtype != np.uint8:
        raise DataError(
            f"{name}: image {relative} has {pixels.dtype} pixels; save it with 8 bits per channel"
        )
    pixels = pixels[..., np.newaxis] if pixels.ndim == 2 else pixels
    first_shape, first = shape.setdefault("first", (pixels.shape, relative))
    if pixels.shape != first_shape:
        dims = ["x".join(map(str, s)) for s in (pixels.shape, first_shape)]
        raise DataError(
            f"{name}: image {relative} is {dims[0]}, but {first} is {dims[1]}; "
            "give every image one size and channel count"
        )
    return pixels


def _stratified(images: np.ndarray, labels: np.ndarray) -> tuple[tuple, tuple]:
    """A seeded test split of :data:`TEST_FRACTION` of each class; both splits in a seeded order."""
    rng = np.random.default_rng(SPLIT_SEED)
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    test = np.concatenate([rng.permutation(i)[: _n_test(len(i))] for i in by_class])
    train = rng.permutation(np.setdiff1d(np.arange(len(labels)), test))
    test = rng.permutation(test)
    return (images[train], labels[train]), (images[test], labels[test])


def _raw(splits: dict, source: str, digests: dict[str, str]) -> RawData:
    arrays = (np.ascontiguousarray(a, dtype=np.uint8) for s in ("train", "test") for a in splits[s])
    return RawData(*arrays, source=source, input_sha256=digests)
