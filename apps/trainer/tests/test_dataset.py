from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from thorax_trainer.contract import LABELS
from thorax_trainer.dataset import (
    COLUMNS,
    CSV_NAME,
    TEST_LIST,
    TRAIN_VAL_LIST,
    DatasetError,
    Record,
    format_finding_labels,
    index_images,
    load_split,
    parse_finding_labels,
    read_list,
    read_records,
    resolve_image_paths,
    split_by_patient,
    split_official,
    write_list,
    write_records,
)
from thorax_trainer.loader import WireImageDataset

# The first rows of an NIH-style file, with the trailing empty column of the 2017 release and
# the "058Y" ages of the older one.
NIH_CSV = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n"
    "00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143,\n"
    "00000001_001.png,Cardiomegaly|Emphysema,1,1,058Y,M,PA,2894,2729,0.143,0.143,\n"
    "00000002_000.png,No Finding,0,2,81,M,PA,2500,2048,0.171,0.171,\n"
    "00000003_000.png,Hernia|Infiltration|Hernia,0,3,74,F,AP,2048,2500,0.168,0.168,\n"
)


def test_parse_finding_labels() -> None:
    assert parse_finding_labels("No Finding") == ()
    assert parse_finding_labels("Effusion") == ("Effusion",)
    # Model order, duplicates dropped, whitespace tolerated.
    assert parse_finding_labels("Mass | Effusion|Mass") == ("Effusion", "Mass")
    with pytest.raises(DatasetError, match="unknown"):
        parse_finding_labels("Effusion|Broken_Bone")
    with pytest.raises(DatasetError, match="empty"):
        parse_finding_labels("")


def test_format_finding_labels_round_trips() -> None:
    assert format_finding_labels([]) == "No Finding"
    assert format_finding_labels(["Mass", "Effusion"]) == "Effusion|Mass"
    for labels in [(), ("Hernia",), ("Atelectasis", "Pleural_Thickening")]:
        assert parse_finding_labels(format_finding_labels(labels)) == labels


def test_read_records_in_nih_layout(tmp_path: Path) -> None:
    path = tmp_path / CSV_NAME
    path.write_text(NIH_CSV, encoding="utf-8")
    records = read_records(path)
    assert [r.image_index for r in records] == [
        "00000001_000.png",
        "00000001_001.png",
        "00000002_000.png",
        "00000003_000.png",
    ]
    first, second, healthy, third = records
    assert first == Record(
        image_index="00000001_000.png",
        labels=("Cardiomegaly",),
        patient_id="1",
        follow_up=0,
        age=58,
        gender="M",
        view_position="PA",
        width=2682,
        height=2749,
        spacing_x=0.143,
        spacing_y=0.143,
    )
    assert second.labels == ("Cardiomegaly", "Emphysema")
    assert second.age == 58
    assert second.follow_up == 1
    assert healthy.labels == ()
    assert third.labels == ("Infiltration", "Hernia")
    target = third.target()
    assert target.dtype == np.float32
    assert target.shape == (14,)
    assert target[LABELS.index("Infiltration")] == 1.0
    assert target[LABELS.index("Hernia")] == 1.0
    assert target.sum() == 2.0
    assert healthy.target().sum() == 0.0


def test_read_records_rejects_bad_files(tmp_path: Path) -> None:
    path = tmp_path / CSV_NAME
    path.write_text("Image Index,Patient ID\nx.png,1\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="Finding Labels"):
        read_records(path)
    path.write_text(NIH_CSV + NIH_CSV.splitlines()[1] + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="duplicate"):
        read_records(path)


def test_write_then_read_keeps_records_and_column_layout(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text(NIH_CSV, encoding="utf-8")
    records = read_records(source)
    target = tmp_path / CSV_NAME
    write_records(target, records)
    assert target.read_text(encoding="utf-8").splitlines()[0] == ",".join(COLUMNS)
    assert read_records(target) == records


def _records(patients: int, seed: int = 0) -> list[Record]:
    rng = np.random.default_rng(seed)
    records = []
    for patient in range(1, patients + 1):
        for follow_up in range(int(rng.integers(1, 6))):
            records.append(
                Record(f"{patient:08d}_{follow_up:03d}.png", (), str(patient), follow_up)
            )
    return records


def test_split_by_patient_never_shares_a_patient() -> None:
    records = _records(200)
    split = split_by_patient(records, (0.7, 0.2, 0.1), seed=5)
    patients = {name: {r.patient_id for r in part} for name, part in split.by_name().items()}
    assert not patients["train"] & patients["validation"]
    assert not patients["train"] & patients["test"]
    assert not patients["validation"] & patients["test"]
    assert sum(len(part) for part in split.by_name().values()) == len(records)
    assert len(patients["train"]) == 140
    assert len(patients["validation"]) == 40
    assert len(patients["test"]) == 20


def test_split_by_patient_is_deterministic_and_order_independent() -> None:
    records = _records(50)
    a = split_by_patient(records, seed=1)
    b = split_by_patient(list(reversed(records)), seed=1)
    c = split_by_patient(records, seed=2)

    def ids(split_records: list[Record]) -> set[str]:
        return {r.image_index for r in split_records}

    assert ids(a.validation) == ids(b.validation)
    assert ids(a.test) == ids(b.test)
    assert ids(a.validation) != ids(c.validation)


def test_split_gives_small_sets_at_least_one_patient_and_checks_fractions() -> None:
    split = split_by_patient(_records(4), (0.8, 0.1, 0.1), seed=0)
    assert split.validation
    assert split.test
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_patient(_records(4), (0.5, 0.2, 0.2))


def test_images_are_found_in_the_nih_archive_folders(tmp_path: Path) -> None:
    folder = tmp_path / "images_002" / "images"
    folder.mkdir(parents=True)
    Image.fromarray(np.full((300, 400), 77, dtype=np.uint8)).save(folder / "a.png")
    records = [Record("a.png", ("Mass",), "9")]
    assert resolve_image_paths(tmp_path, records) == [folder / "a.png"]
    with pytest.raises(DatasetError, match="not found"):
        resolve_image_paths(tmp_path, [Record("b.png", (), "9")])

    dataset = WireImageDataset(tmp_path, records, preload=False)
    image, target = dataset[0]
    assert image.shape == (1, 256, 256)
    assert int(image.min()) == int(image.max()) == 77
    assert target[LABELS.index("Mass")] == 1.0


def test_synthetic_dataset_loads_through_the_nih_reader(synthetic_dir: Path) -> None:
    records = read_records(synthetic_dir / CSV_NAME)
    dataset = WireImageDataset(synthetic_dir, records)
    assert len(dataset) == len(records) == 60
    images = dataset.images()
    assert images.shape == (60, 1, 256, 256)
    assert dataset.targets.shape == (60, 14)


def _assert_patient_disjoint(parts: dict[str, list[Record]]) -> None:
    patients = {name: {r.patient_id for r in part} for name, part in parts.items()}
    assert not patients["train"] & patients["validation"]
    assert not patients["train"] & patients["test"]
    assert not patients["validation"] & patients["test"]


def test_random_patient_split_is_chexnets_70_10_20_by_default() -> None:
    records = _records(300, seed=4)
    split = load_split(Path("unused"), "random-patient", seed=9, records=records)
    assert split.method == "random-patient"
    _assert_patient_disjoint(split.by_name())
    patients = {name: len({r.patient_id for r in p}) for name, p in split.by_name().items()}
    assert patients == {"train": 210, "validation": 30, "test": 60}


def test_official_split_takes_the_test_list_and_cuts_train_val_by_patient() -> None:
    records = _records(120, seed=2)
    test_patients = {str(p) for p in range(1, 121) if p % 5 == 0}
    test = [r.image_index for r in records if r.patient_id in test_patients]
    train_val = [r.image_index for r in records if r.patient_id not in test_patients]
    split = split_official(records, train_val, test, validation_fraction=0.125, seed=3)
    assert split.method == "official"
    assert sorted(r.image_index for r in split.test) == sorted(test)
    _assert_patient_disjoint(split.by_name())
    assert len({r.patient_id for r in split.validation}) == round(0.125 * 96)
    assert len(split.train) + len(split.validation) == len(train_val)
    assert split.excluded == {}
    # Same seed, same validation patients; another seed, others.
    again = split_official(records, train_val, test, validation_fraction=0.125, seed=3)
    other = split_official(records, train_val, test, validation_fraction=0.125, seed=4)
    assert again.validation == split.validation
    assert other.validation != split.validation


def test_official_split_never_lets_a_test_patient_into_training() -> None:
    records = _records(30, seed=1)
    multi = next(r.patient_id for r in records if r.follow_up == 1)
    own = [r.image_index for r in records if r.patient_id == multi]
    # A list that (unlike NIH's) puts one of this patient's images in test, the rest in train_val,
    # and leaves one unrelated image out of both lists.
    test = own[:1]
    unlisted = next(r.image_index for r in records if r.patient_id != multi)
    train_val = [r.image_index for r in records if r.image_index not in [*test, unlisted]]
    split = split_official(records, train_val, test, seed=0)
    _assert_patient_disjoint(split.by_name())
    assert split.excluded == {"notInAnyList": 1, "patientAlsoInTest": len(own) - 1}
    with pytest.raises(DatasetError, match="both train_val and test"):
        split_official(records, train_val + test, test)


def test_split_lists_round_trip_and_missing_lists_are_named(tmp_path: Path) -> None:
    write_list(tmp_path / TEST_LIST, ["b.png", "a.png"])
    (tmp_path / TRAIN_VAL_LIST).write_text("c.png\n\n d.png \n", encoding="utf-8")
    assert read_list(tmp_path / TEST_LIST) == ["b.png", "a.png"]
    assert read_list(tmp_path / TRAIN_VAL_LIST) == ["c.png", "d.png"]
    with pytest.raises(DatasetError, match="official split needs it"):
        read_list(tmp_path / "nothing.txt")
    with pytest.raises(ValueError, match="unknown split method"):
        load_split(tmp_path, "image-level", records=_records(3))


def test_index_images_lists_every_archive_folder_once(tmp_path: Path) -> None:
    for folder, names in (("images_001", ["a.png", "b.png"]), ("images_012", ["c.png"])):
        directory = tmp_path / folder / "images"
        directory.mkdir(parents=True)
        for name in names:
            (directory / name).write_bytes(b"")
    (tmp_path / "images_001" / "images" / "sub").mkdir()
    index = index_images(tmp_path)
    assert sorted(index) == ["a.png", "b.png", "c.png"]
    assert index["c.png"] == tmp_path / "images_012" / "images" / "c.png"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images/"):
        index_images(tmp_path / "empty")


@pytest.mark.parametrize("method", ["official", "random-patient"])
def test_synthetic_dataset_splits_share_no_patient(synthetic_dir: Path, method: str) -> None:
    split = load_split(synthetic_dir, method, seed=1)
    _assert_patient_disjoint(split.by_name())
    assert split.train
    assert split.validation
    assert split.test
    if method == "official":
        assert {r.image_index for r in split.test} == set(read_list(synthetic_dir / TEST_LIST))
