"""The fetcher against a local HTTP server (127.0.0.1 only) serving sample files in the real formats."""

from __future__ import annotations

import gzip
import hashlib
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from genen_dgl.data.fetch import GAF_FILES, download, fetch, main, plan, read_checksums
from genen_dgl.data.spec import load_spec
from genen_dgl.errors import InputError

LINKS, INFO = "9606.protein.links.v12.0.txt.gz", "9606.protein.info.v12.0.txt.gz"


class Handler(BaseHTTPRequestHandler):
    """GET with ``Range: bytes=N-``; paths in ``server.cut`` are cut midway on their first request."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if rng and not srv.no_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"v1"')
        self.end_headers()
        if self.path in srv.cut:  # drop the connection halfway, once
            srv.cut.discard(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Any connection other than to 127.0.0.1 fails the test."""
    connect = socket.socket.connect

    def guarded(sock, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "localhost"):
            raise AssertionError(f"test tried to reach {address}")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="module")
def sources(sample_spec) -> dict[str, bytes]:
    """STRING links/info, OBO and gzipped GAF files of the generated sample, by file name."""
    data = sample_spec.parent
    return {
        LINKS: (data / "string" / LINKS).read_bytes(),
        INFO: (data / "string" / INFO).read_bytes(),
        "go-basic.obo": (data / "go/go-basic.obo").read_bytes(),
        "goa_human.gaf.gz": gzip.compress((data / "go/goa_human.gaf").read_bytes(), mtime=0),
    }


@pytest.fixture
def server(sources):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.files = {f"/mirror/{name}": data for name, data in sources.items()}
    srv.requests, srv.cut, srv.no_range = [], set(), False
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}/mirror"
    yield srv
    srv.shutdown()
    srv.server_close()


def test_plan_default_urls():
    urls = {s.key: s.url for s in plan("9606")}
    assert urls["links"] == f"https://stringdb-downloads.org/download/protein.links.v12.0/{LINKS}"
    assert urls["aliases"] == f"https://stringdb-downloads.org/download/protein.info.v12.0/{INFO}"
    assert urls["obo"] == "https://purl.obolibrary.org/obo/go/go-basic.obo"
    assert urls["annotations"] == "https://current.geneontology.org/annotations/goa_human.gaf.gz"
    assert GAF_FILES["10090"] == "mgi.gaf.gz"
    with pytest.raises(InputError, match="--gaf-url"):
        plan("12345")


def test_fetch_resumes_interrupted_transfer_and_writes_spec(server, sources, tmp_path):
    out = tmp_path / "real"
    server.cut.add(f"/mirror/{LINKS}")
    with pytest.raises(InputError, match="run again to resume"):
        fetch(out, "9606", mirror=server.base, retries=0, backoff=0)
    part = out / "string" / (LINKS + ".part")
    assert not (out / "string" / LINKS).exists() and 0 < part.stat().st_size < len(sources[LINKS])
    half = part.stat().st_size
    server.requests.clear()
    spec_path = fetch(out, "9606", mirror=server.base, retries=0, backoff=0)
    assert (f"/mirror/{LINKS}", f"bytes={half}-") in server.requests
    for name, data in sources.items():
        sub = "string" if name.startswith("9606") else "go"
        assert (out / sub / name).read_bytes() == data
    assert not list(out.rglob("*.part*"))
    spec = load_spec(spec_path)
    assert spec.ppi["links"] == out / "string" / LINKS and spec.go["annotations"] == out / "go/goa_human.gaf.gz"
    assert spec.features == {} and spec.tasks == {} and spec.ppi["min_score"] == 150
    # a second run downloads nothing and keeps sections the user added
    text = spec_path.read_text() + "summaries: {file: go/go-basic.obo}\n"
    spec_path.write_text(text)
    server.requests.clear()
    fetch(out, "9606", mirror=server.base)
    assert server.requests == [] and load_spec(spec_path).summaries["file"] == out / "go/go-basic.obo"


def test_dropped_connection_is_retried_with_range(server, sources, tmp_path):
    server.cut.add("/mirror/go-basic.obo")
    dest = download(f"{server.base}/go-basic.obo", tmp_path / "go.obo", retries=1, backoff=0)
    assert dest.read_bytes() == sources["go-basic.obo"]
    ranges = [r for p, r in server.requests if p == "/mirror/go-basic.obo"]
    assert ranges[0] is None and ranges[1] == f"bytes={len(sources['go-basic.obo']) // 2}-"


def test_checksum_mismatch_rejected(server, sources, tmp_path):
    good = hashlib.sha256(sources[INFO]).hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{good}  {INFO}\n{hashlib.md5(b'x').hexdigest()}  go-basic.obo\n")
    sums = read_checksums(tmp_path / "SHA256SUMS")
    assert sums[INFO] == ("sha256", good) and sums["go-basic.obo"][0] == "md5"
    dest = download(f"{server.base}/{INFO}", tmp_path / INFO, sums[INFO])
    assert dest.read_bytes() == sources[INFO]
    with pytest.raises(InputError, match="md5 mismatch.*removed"):
        download(f"{server.base}/go-basic.obo", tmp_path / "go-basic.obo", sums["go-basic.obo"])
    assert not list(tmp_path.glob("go-basic.obo*"))  # neither the final file nor a .part


def test_corrupt_gzip_rejected(server, sources, tmp_path):
    server.files["/mirror/bad.gaf.gz"] = sources["goa_human.gaf.gz"][:-40]  # complete transfer of a truncated gzip
    with pytest.raises(InputError, match="corrupt gzip"):
        download(f"{server.base}/bad.gaf.gz", tmp_path / "bad.gaf.gz")
    assert not list(tmp_path.glob("bad.gaf.gz*"))


def test_short_transfers_give_up_without_final_file(server, sources, tmp_path):
    server.cut = _AlwaysCut("/mirror/go-basic.obo")  # every request is cut halfway
    with pytest.raises(InputError, match=r"failed after 2 attempts .*closed after \d+ of \d+ bytes"):
        download(f"{server.base}/go-basic.obo", tmp_path / "go.obo", retries=1, backoff=0)
    assert not (tmp_path / "go.obo").exists() and (tmp_path / "go.obo.part").exists()


def test_oversized_part_restarts(server, sources, tmp_path):
    url = f"{server.base}/go-basic.obo"
    (tmp_path / "go.obo.part").write_bytes(b"x" * (len(sources["go-basic.obo"]) + 10))
    (tmp_path / "go.obo.part.json").write_text(f'{{"url": "{url}", "total": 5}}')
    dest = download(url, tmp_path / "go.obo", retries=1, backoff=0)
    assert dest.read_bytes() == sources["go-basic.obo"]


def test_server_without_range_support_restarts(server, sources, tmp_path):
    server.no_range = True
    server.cut.add("/mirror/go-basic.obo")
    dest = download(f"{server.base}/go-basic.obo", tmp_path / "go.obo", retries=1, backoff=0)
    assert dest.read_bytes() == sources["go-basic.obo"]  # the 200 answer replaced the partial file


def test_file_url_mirror(sources, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m/go-basic.obo").write_bytes(sources["go-basic.obo"])
    dest = download((tmp_path / "m/go-basic.obo").as_uri(), tmp_path / "out/go-basic.obo")
    assert dest.read_bytes() == sources["go-basic.obo"]


def test_cli_errors_are_one_line(server, tmp_path, capsys):
    assert main(["--species", "9606", "--out", str(tmp_path / "o"), "--mirror", server.base + "/missing",
                 "--retries", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "HTTP 404" in err
    assert main(["--species", "424242", "--out", str(tmp_path / "o")]) == 2
    assert "--gaf-url" in capsys.readouterr().err
    assert main(["--species", "9606", "--out", str(tmp_path / "ok"), "--mirror", server.base]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "ok" / "dataset.yaml")


class _AlwaysCut(set):
    """A ``server.cut`` that never forgets its path."""

    def __init__(self, path: str):
        super().__init__([path])

    def discard(self, value) -> None:
        pass
