"""Finding ISMN files in folders and zips; hostile archives and links are refused, not read."""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path

import pytest

from etl.errors import InputError
from etl.insitu.sources import Kind, ReadLimits, Sources

DOWNLOAD = "Data_seperate_files_header_20170810_20180809"


def _zip(path: Path, members: dict[str, bytes], *, links: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in links:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, data)
    return path


def test_the_reference_download_is_found_the_same_as_folder_and_as_zip(
    reference_data: Path,
) -> None:
    ismn = reference_data / "ismn"
    with Sources([ismn / DOWNLOAD], limits=ReadLimits()) as folder:
        from_folder = {(f.name, f.kind) for f in folder.files}
        data = {f.name: folder.read(f).sha256 for f in folder.files}
    with Sources([ismn / "zip_archives/header"], limits=ReadLimits()) as archive:
        from_zip = {(f.name, f.kind) for f in archive.files}
        assert all(f.member and f.problem is None for f in archive.files)
        assert {f.name: archive.read(f).sha256 for f in archive.files} == data
    assert from_folder == from_zip
    assert sorted(k for _, k in from_folder) == [Kind.DATA, Kind.DATA, Kind.STATIC, Kind.STATIC]
    assert "Metadata.xml" not in {n for n, _ in from_folder}


def test_a_flat_folder_and_a_zip_inside_a_folder_are_found(tmp_path: Path) -> None:
    (tmp_path / "a_a_s_sm_0.05_0.05_x_20200101_20200101.stm").write_bytes(b"x")
    (tmp_path / "readme.txt").write_bytes(b"ignored")
    _zip(tmp_path / "more.zip", {"N/S/b_b_s_static_variables.csv": b"y"})
    with Sources([tmp_path], limits=ReadLimits()) as sources:
        found = [(f.name, f.kind, bool(f.member)) for f in sources.files]
    assert found == [
        ("a_a_s_sm_0.05_0.05_x_20200101_20200101.stm", Kind.DATA, False),
        ("b_b_s_static_variables.csv", Kind.STATIC, True),
    ]


def test_a_file_named_twice_is_listed_once(tmp_path: Path) -> None:
    data = tmp_path / "a_a_s_sm_0.05_0.05_x_20200101_20200101.stm"
    data.write_bytes(b"x")
    archive = _zip(tmp_path / "more.zip", {"N/S/b_b_s_static_variables.csv": b"y"})
    with Sources([data, tmp_path, archive, tmp_path / "." / data.name], limits=ReadLimits()) as s:
        found = [(f.name, bool(f.member)) for f in s.files]
    assert found == [(data.name, False), ("b_b_s_static_variables.csv", True)]


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ("../../escape_sm_0.05_0.05_x_20200101_20200101.stm", "escapes the archive"),
        ("/etc/cron.d/evil", "escapes the archive"),
        ("ok/../../x.stm", "escapes the archive"),
        ("C:/Windows/x.stm", "escapes the archive"),
        ("..\\..\\x.stm", "escapes the archive"),
    ],
)
def test_a_zip_member_escaping_the_archive_is_refused(
    tmp_path: Path, member: str, message: str
) -> None:
    good = "N/S/n_n_s_sm_0.05_0.05_x_20200101_20200101.stm"
    archive = _zip(tmp_path / "slip.zip", {good: b"good", member: b"evil"})
    with Sources([archive], limits=ReadLimits()) as sources:
        refused = [f for f in sources.files if f.problem]
        assert [f.member for f in refused] == [member]
        assert message in (refused[0].problem or "")
        with pytest.raises(InputError, match=message):
            sources.read(refused[0])
        [ok] = [f for f in sources.files if not f.problem]
        assert sources.read(ok).data == b"good"
    assert not (tmp_path.parent / "escape_sm_0.05_0.05_x_20200101_20200101.stm").exists()


def test_a_symlink_member_and_an_absurd_size_are_refused(tmp_path: Path) -> None:
    archive = _zip(
        tmp_path / "bad.zip",
        {
            "N/S/link_sm_0.05_0.05_x_20200101_20200101.stm": b"/etc/passwd",
            "N/S/bomb_sm_0.05_0.05_x_20200101_20200101.stm": b"0" * (3 << 20),
            "N/S/big_static_variables.csv": b"x" * 5000,
        },
        links=("N/S/link_sm_0.05_0.05_x_20200101_20200101.stm",),
    )
    limits = ReadLimits(max_member_bytes=4096, max_ratio=100.0)
    with Sources([archive], limits=limits) as sources:
        problems = {f.name.split("_")[0]: f.problem for f in sources.files}
    assert "symbolic link" in (problems["link"] or "")
    assert "more than the limit of 4096" in (problems["big"] or "")
    assert "more than the limit" in (problems["bomb"] or "")
    with Sources([archive], limits=ReadLimits(max_ratio=100.0)) as sources:
        bomb = next(f for f in sources.files if f.name.startswith("bomb"))
        assert "zip bomb" in (bomb.problem or "")


def test_symlinks_in_folders_are_refused_and_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o_o_s_sm_0.05_0.05_x_20200101_20200101.stm").write_bytes(b"secret")
    root = tmp_path / "download"
    root.mkdir()
    (root / "n_n_s_sm_0.05_0.05_x_20200101_20200101.stm").symlink_to(
        outside / "o_o_s_sm_0.05_0.05_x_20200101_20200101.stm"
    )
    (root / "linked_dir").symlink_to(outside, target_is_directory=True)
    with Sources([root], limits=ReadLimits()) as sources:
        assert all(f.problem == "symbolic link refused" for f in sources.files)
        assert len(sources.files) == 2


def test_a_corrupt_or_truncated_zip_is_one_refused_entry(
    tmp_path: Path, reference_data: Path
) -> None:
    source = next((reference_data / "ismn/zip_archives/header").glob("*.zip"))
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(source.read_bytes()[:20000])
    with Sources([truncated], limits=ReadLimits()) as sources:
        [entry] = sources.files
    assert entry.kind is Kind.ARCHIVE and "not a readable zip archive" in (entry.problem or "")


def test_a_member_whose_data_is_damaged_fails_on_read(tmp_path: Path, reference_data: Path) -> None:
    source = next((reference_data / "ismn/zip_archives/header").glob("*.zip"))
    damaged = tmp_path / "damaged.zip"
    shutil.copy(source, damaged)
    raw = bytearray(damaged.read_bytes())
    with zipfile.ZipFile(source) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(".stm"))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 100
    raw[start : start + 200] = bytes(200)
    damaged.write_bytes(bytes(raw))
    with Sources([damaged], limits=ReadLimits()) as sources:
        entry = next(f for f in sources.files if f.member == info.filename)
        with pytest.raises(InputError, match="cannot be read"):
            sources.read(entry)
