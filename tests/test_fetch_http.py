"""Fetching from a fake NASA on 127.0.0.1: CMR paging, token auth across redirects, retries,
truncated bodies, HTML error pages, and the archive's verify-then-rename with quarantine."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import h5py
import numpy as np
import pytest
from fake_nasa import TOKEN, FakeNasa, serving

from etl.archive import Archive, sha256_of
from etl.errors import AuthenticationError, FetchError, GranuleNotFoundError, QuarantinedError
from etl.sources import Granule
from etl.sources.cmr import CmrProduct, search
from etl.sources.http import HttpClient
from etl.sources.local import LocalDirectorySource


def _h5_bytes(tmp: Path, name: str, value: float) -> bytes:
    path = tmp / name
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.full((4, 4), value), track_times=False)
    return path.read_bytes()


@pytest.fixture
def nasa(tmp_path: Path) -> Iterator[FakeNasa]:
    src = tmp_path / "src"
    src.mkdir()
    files = {
        f"SMAP_L3_SM_P_20240403_R19240_00{i}.h5": _h5_bytes(src, f"g{i}.h5", i) for i in range(1, 6)
    }
    files["html.h5"] = b"<html><body>Earthdata Login</body></html>"
    with serving(FakeNasa(files=files)) as fake:
        yield fake


def _client(token: str = TOKEN, *, refreshed: str | None = None) -> HttpClient:
    def provider(refresh: bool) -> str:
        return refreshed if refresh and refreshed is not None else token

    return HttpClient(
        token=provider,
        trusted_hosts=("127.0.0.1",),
        retries=3,
        backoff_s=0.01,
        read_timeout_s=5,
        sleep=lambda s: None,
    )


def _granule(nasa: FakeNasa, name: str, *, path: str = "data", size: bool = True) -> Granule:
    return Granule(
        source="SPL3SMP",
        granule_id=name,
        day=date(2024, 4, 3),
        url=f"{nasa.base}/{path}/{name}",
        size=len(nasa.files[name]) if size and name in nasa.files else None,
    )


def _open_h5(path: Path) -> None:
    with h5py.File(path, "r") as f:
        f["x"][:]


def _archive(tmp_path: Path) -> Archive:
    return Archive(root=tmp_path / "archive", quarantine=tmp_path / "quarantine")


def _fetch(client: HttpClient, archive: Archive, g: Granule) -> Path:
    return archive.store(g, lambda out: client.download(g.url, out), verify=_open_h5).path


def test_cmr_search_follows_search_after_paging_and_keeps_sizes_and_checksums(
    nasa: FakeNasa,
) -> None:
    for i in range(1, 6):
        name = f"SMAP_L3_SM_P_20240403_R19240_00{i}.h5"
        nasa.cmr_items.append(
            {
                "meta": {"concept-id": f"G{i}"},
                "umm": {
                    "GranuleUR": name,
                    "RelatedUrls": [
                        {"Type": "GET DATA", "URL": f"https://n5eil01u.example/{name}"},
                        {"Type": "VIEW RELATED INFORMATION", "URL": "https://doc"},
                    ],
                    "DataGranule": {
                        "ArchiveAndDistributionInformation": [
                            {
                                "Name": name,
                                "SizeInBytes": 1000 + i,
                                "Checksum": {"Value": f"{i:032x}", "Algorithm": "MD5"},
                            }
                        ]
                    },
                },
            }
        )
    found = search(
        _client(),
        CmrProduct("SPL3SMP", "SPL3SMP", "009"),
        date(2024, 4, 3),
        bbox=(113.1, 33.1, 117.6, 36.6),
        base_url=nasa.base,
        page_size=2,
    )
    assert [g.granule_id for g in found] == [
        f"SMAP_L3_SM_P_20240403_R19240_00{i}.h5" for i in range(1, 6)
    ]
    assert nasa.requests.count("/search/granules.umm_json") == 3
    assert found[0].size == 1001 and found[0].checksum is not None
    assert found[0].checksum.algorithm == "MD5" and found[0].url.startswith("https://")


def test_download_keeps_the_token_across_a_redirect_and_archives_atomically(
    nasa: FakeNasa, tmp_path: Path
) -> None:
    name = "SMAP_L3_SM_P_20240403_R19240_001.h5"
    archive = _archive(tmp_path)
    path = _fetch(_client(), archive, _granule(nasa, name, path="redirect"))
    assert path == tmp_path / "archive" / "SPL3SMP" / "2024" / "04" / "03" / name
    assert path.read_bytes() == nasa.files[name]
    assert archive.existing(_granule(nasa, name)) is not None
    assert not any((tmp_path / "archive" / ".tmp").iterdir())


def test_503_then_success_is_retried(nasa: FakeNasa, tmp_path: Path) -> None:
    name = "SMAP_L3_SM_P_20240403_R19240_002.h5"
    nasa.fail_first[name] = 2
    path = _fetch(_client(), _archive(tmp_path), _granule(nasa, name))
    assert path.read_bytes() == nasa.files[name]
    assert nasa.requests.count(f"/data/{name}") == 3


def test_a_persistent_5xx_gives_up_with_a_fetch_error_and_leaves_nothing(
    nasa: FakeNasa, tmp_path: Path
) -> None:
    name = "SMAP_L3_SM_P_20240403_R19240_003.h5"
    nasa.fail_first[name] = 99
    archive = _archive(tmp_path)
    with pytest.raises(FetchError, match="giving up after 4 attempts"):
        _fetch(_client(), archive, _granule(nasa, name))
    assert archive.existing(_granule(nasa, name)) is None
    assert not (tmp_path / "quarantine").exists()


def test_a_body_cut_short_is_downloaded_again(nasa: FakeNasa, tmp_path: Path) -> None:
    name = "SMAP_L3_SM_P_20240403_R19240_004.h5"
    nasa.truncate_first[name] = 1
    path = _fetch(_client(), _archive(tmp_path), _granule(nasa, name))
    assert sha256_of(path) == hashlib.sha256(nasa.files[name]).hexdigest()


def test_an_html_page_served_as_h5_is_quarantined_not_archived(
    nasa: FakeNasa, tmp_path: Path
) -> None:
    archive = _archive(tmp_path)
    with pytest.raises(QuarantinedError, match=r"html\.h5: does not open"):
        _fetch(_client(), archive, _granule(nasa, "html.h5"))
    assert archive.existing(_granule(nasa, "html.h5")) is None
    q = tmp_path / "quarantine" / "SPL3SMP" / "2024-04-03"
    assert (q / "html.h5").read_bytes() == nasa.files["html.h5"]
    assert "does not open" in (q / "html.h5.reason").read_text()


def test_a_size_or_checksum_mismatch_is_quarantined(nasa: FakeNasa, tmp_path: Path) -> None:
    from etl.sources import Checksum

    name = "SMAP_L3_SM_P_20240403_R19240_005.h5"
    archive = _archive(tmp_path)
    wrong_size = Granule(**{**_granule(nasa, name).__dict__, "size": 12})
    with pytest.raises(QuarantinedError, match="provider says 12"):
        _fetch(_client(), archive, wrong_size)
    wrong_sum = Granule(**{**_granule(nasa, name).__dict__, "checksum": Checksum("MD5", "0" * 32)})
    with pytest.raises(QuarantinedError, match=r"MD5 .* does not match"):
        _fetch(_client(), archive, wrong_sum)
    right_sum = Granule(
        **{
            **_granule(nasa, name).__dict__,
            "checksum": Checksum("MD5", hashlib.md5(nasa.files[name]).hexdigest()),
        }
    )
    assert _fetch(_client(), archive, right_sum).is_file()


def test_an_expired_token_is_refreshed_once(nasa: FakeNasa, tmp_path: Path) -> None:
    name = "SMAP_L3_SM_P_20240403_R19240_001.h5"
    path = _fetch(_client("expired", refreshed=TOKEN), _archive(tmp_path), _granule(nasa, name))
    assert path.is_file()
    assert nasa.auth_headers == ["Bearer expired", f"Bearer {TOKEN}"]


def test_a_refused_token_is_an_authentication_error_not_missing_data(
    nasa: FakeNasa, tmp_path: Path
) -> None:
    name = "SMAP_L3_SM_P_20240403_R19240_001.h5"
    with pytest.raises(AuthenticationError, match="HTTP 401") as info:
        _fetch(_client("revoked", refreshed="still-bad"), _archive(tmp_path), _granule(nasa, name))
    assert "revoked" not in str(info.value) and "still-bad" not in str(info.value)
    assert len(nasa.auth_headers) == 2


def test_a_missing_granule_is_not_found(nasa: FakeNasa, tmp_path: Path) -> None:
    g = Granule(
        source="SPL3SMP",
        granule_id="SMAP_L3_SM_P_20240404_R19240_001.h5",
        day=date(2024, 4, 4),
        url=f"{nasa.base}/data/SMAP_L3_SM_P_20240404_R19240_001.h5",
    )
    with pytest.raises(GranuleNotFoundError):
        _fetch(_client(), _archive(tmp_path), g)


def test_the_token_is_not_sent_to_an_untrusted_redirect_target(nasa: FakeNasa) -> None:
    client = HttpClient(
        token=lambda refresh: TOKEN,
        trusted_hosts=("earthdata.nasa.gov",),
        retries=0,
        sleep=lambda s: None,
    )
    name = "SMAP_L3_SM_P_20240403_R19240_001.h5"
    with pytest.raises(AuthenticationError):
        client.download(f"{nasa.base}/redirect/{name}", open("/dev/null", "wb"))  # noqa: SIM115
    assert nasa.auth_headers == [None, None]


def test_a_local_directory_is_served_like_a_provider(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror" / "smap" / "SPL3SMP" / "2024.04.03"
    mirror.mkdir(parents=True)
    good = mirror / "SMAP_L3_SM_P_20240403_R19240_001.h5"
    good.write_bytes(_h5_bytes(tmp_path, "a.h5", 0.25))
    (mirror / "SMAP_L3_SM_P_20240403_R19240_002.h5").write_bytes(b"")
    source = LocalDirectorySource(
        source="SPL3SMP",
        root=tmp_path / "mirror",
        pattern="smap/SPL3SMP/{day:%Y.%m.%d}/SMAP_L3_SM_P_{day:%Y%m%d}_*.h5",
    )
    found = source.discover(date(2024, 4, 3))
    assert [g.granule_id for g in found] == [good.name, "SMAP_L3_SM_P_20240403_R19240_002.h5"]
    assert source.discover(date(2024, 4, 4)) == []
    archive = _archive(tmp_path)
    stored = archive.store(found[0], lambda out: source.write(found[0], out), verify=_open_h5)
    assert stored.sha256 == sha256_of(good)
    with pytest.raises(QuarantinedError, match="empty file"):
        archive.store(found[1], lambda out: source.write(found[1], out), verify=_open_h5)


def test_a_granule_id_that_is_a_path_is_refused(tmp_path: Path) -> None:
    g = Granule(source="S", granule_id="../../etc/passwd", day=date(2024, 4, 3), url="x")
    with pytest.raises(QuarantinedError, match="not a plain file name"):
        _archive(tmp_path).path_for(g)


@pytest.mark.parametrize(
    ("url", "carries"),
    [
        ("https://cmr.earthdata.nasa.gov/search/granules.umm_json", True),
        ("https://data.nsidc.earthdatacloud.nasa.gov/x.h5", True),
        ("http://data.nsidc.earthdatacloud.nasa.gov/x.h5", False),  # plain http
        ("https://data.chc.ucsb.edu/products/CHIRPS-2.0/x.tif", False),  # another provider
        ("https://earthdata.nasa.gov.evil.example/x.h5", False),
        ("https://notearthdata.nasa.gov/x.h5", False),
        ("http://127.0.0.1:8080/x.h5", False),  # loopback, but not trusted
    ],
)
def test_the_token_goes_only_to_trusted_hosts_over_https(url: str, carries: bool) -> None:
    from etl.sources.http import may_carry_token

    assert may_carry_token(url, ("earthdata.nasa.gov", "earthdatacloud.nasa.gov")) is carries
    assert may_carry_token("http://127.0.0.1:8080/x.h5", ("127.0.0.1",))
