"""Download the public sources of a species and write a ``dataset.yaml`` for them.

``python -m genen_dgl.data.fetch --species 9606 --out DIR`` fetches STRING protein links and
protein info (``--string-version``, default v12.0), the GO ontology (go-basic.obo) and the
species' GO annotations (GAF), into ``DIR/string`` and ``DIR/go``, then writes
``DIR/dataset.yaml`` with the ``ppi`` and ``go`` sections (other sections of an existing
yaml are kept; ``features`` is left for ``python -m genen_dgl.encode``).

Downloads go to ``NAME.part`` and resume with an HTTP Range request after a dropped
connection or an interrupted run; a file is renamed into place only when its size matches
the server's Content-Length, its gzip stream checks out, and its sha256/md5 matches where one
is given (``--checksums``, ``sha256sum``/``md5sum`` output). Standard library only (urllib).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import yaml
from tqdm import tqdm

from genen_dgl import __version__
from genen_dgl.atomic import atomic_path
from genen_dgl.data.ontology import DEFAULT_LEAKAGE_WORDS
from genen_dgl.errors import InputError, cli
from genen_dgl.provenance import add_version

log = logging.getLogger(__name__)

STRING_URL = "https://stringdb-downloads.org/download"
GO_URL = "https://purl.obolibrary.org/obo/go/go-basic.obo"
GAF_BASE = "https://current.geneontology.org/annotations"
# NCBI taxon (as STRING names it) -> GO consortium annotation file
GAF_FILES = {
    "9606": "goa_human.gaf.gz", "10090": "mgi.gaf.gz", "10116": "rgd.gaf.gz", "7955": "zfin.gaf.gz",
    "7227": "fb.gaf.gz", "6239": "wb.gaf.gz", "4932": "sgd.gaf.gz", "3702": "tair.gaf.gz",
}
CHUNK = 1 << 20
RETRY_HTTP = {408, 425, 429, 500, 502, 503, 504}
USER_AGENT = f"genen-dgl/{__version__} (urllib)"


class Transient(Exception):
    """A failure worth retrying (the next attempt resumes from the .part file)."""


@dataclass
class Source:
    key: str  # links | aliases | obo | annotations
    url: str
    dest: str  # path relative to the output folder


def plan(species: str, version: str = "v12.0", string_url: str | None = None, go_url: str | None = None,
         gaf_url: str | None = None, mirror: str | None = None) -> list[Source]:
    """The four downloads for ``species``. ``mirror`` is a base URL holding all files by
    name; ``string_url`` a base with STRING's layout; ``go_url``/``gaf_url`` full URLs."""
    if not re.fullmatch(r"\d+", species):
        raise InputError(f"--species {species!r}: expected an NCBI taxon id such as 9606")
    version = version if version.startswith("v") else f"v{version}"
    links, info = f"{species}.protein.links.{version}.txt.gz", f"{species}.protein.info.{version}.txt.gz"
    if gaf_url is None and species not in GAF_FILES:
        known = ", ".join(f"{k} ({v})" for k, v in GAF_FILES.items())
        raise InputError(f"no known GAF file for species {species}; pass --gaf-url (known: {known})")
    gaf_url = gaf_url or (f"{mirror.rstrip('/')}/{GAF_FILES[species]}" if mirror else f"{GAF_BASE}/{GAF_FILES[species]}")
    gaf_name = gaf_url.rstrip("/").rsplit("/", 1)[-1] or "annotations.gaf"
    if string_url is None and mirror:
        string_links, string_info = f"{mirror.rstrip('/')}/{links}", f"{mirror.rstrip('/')}/{info}"
    else:
        base = (string_url or STRING_URL).rstrip("/")
        string_links = f"{base}/protein.links.{version}/{links}"
        string_info = f"{base}/protein.info.{version}/{info}"
    go_url = go_url or (f"{mirror.rstrip('/')}/go-basic.obo" if mirror else GO_URL)
    return [
        Source("links", string_links, f"string/{links}"),
        Source("aliases", string_info, f"string/{info}"),
        Source("obo", go_url, "go/" + (go_url.rstrip("/").rsplit("/", 1)[-1] or "go-basic.obo")),
        Source("annotations", gaf_url, f"go/{gaf_name}"),
    ]


def read_checksums(path: str | Path) -> dict[str, tuple[str, str]]:
    """``sha256sum``/``md5sum`` output -> file name -> (algorithm, hex digest)."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    sums = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([0-9a-fA-F]{32}|[0-9a-fA-F]{64})\s+\*?(\S.*)", line.strip())
        if not match:
            raise InputError(f"expected 'HEXDIGEST  FILENAME' (sha256 or md5), found {line.strip()!r}", path, number)
        digest, name = match.group(1).lower(), Path(match.group(2).strip()).name
        sums[name] = ("md5" if len(digest) == 32 else "sha256", digest)
    return sums


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes START-END/TOTAL`` or ``bytes */TOTAL`` -> (start, total)."""
    match = re.fullmatch(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", (value or "").strip())
    if not match:
        return None, None
    start, total = match.groups()
    return (int(start) if start else None), (int(total) if total != "*" else None)


def _drop(*paths: Path) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def _transfer(url: str, part: Path, meta: Path, timeout: float, label: str) -> None:
    """One request: fetch ``url`` into ``part``, appending from its size when resuming."""
    offset = part.stat().st_size if part.exists() else 0
    state = json.loads(meta.read_text()) if offset and meta.exists() else {}
    if offset and state.get("url") != url:  # left by another source: start over
        _drop(part, meta)
        offset, state = 0, {}
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        etag = state.get("etag") if not str(state.get("etag")).startswith("W/") else None  # weak tags may not
        if etag or state.get("last_modified"):
            headers["If-Range"] = etag or state["last_modified"]
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            _, total = _content_range(err.headers.get("Content-Range"))
            if total is not None and total == offset == state.get("total"):
                return  # the .part already holds the whole file
            _drop(part, meta)
            raise Transient(f"server refused to resume at byte {offset}; starting over") from None
        if err.code in RETRY_HTTP:
            raise Transient(f"HTTP {err.code} {err.reason}") from None
        raise InputError(f"HTTP {err.code} {err.reason} for {url}; expected the file (check the URL or --mirror)") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise Transient(str(getattr(err, "reason", err))) from None
    with resp:
        status = resp.status or 200  # file:// answers without a status
        if status == 206:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != offset or (state.get("total") is not None and total != state["total"]):
                _drop(part, meta)
                raise Transient(f"server resumed at byte {start} of {total}, expected {offset} of {state.get('total')}; starting over")
            mode = "ab"
        else:
            if offset:
                log.info("%s: server sent the whole file (no resume or the file changed); starting over", label)
            offset, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        state = {"url": url, "total": total, "etag": resp.headers.get("ETag"),
                 "last_modified": resp.headers.get("Last-Modified")}
        meta.write_text(json.dumps(state))
        with open(part, mode) as fh, tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                                          desc=label, disable=None) as bar:
            try:
                for chunk in iter(lambda: resp.read(CHUNK), b""):
                    fh.write(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as err:
                raise Transient(f"connection lost ({err or type(err).__name__})") from None
    size = part.stat().st_size
    if total is not None and size < total:
        raise Transient(f"connection closed after {size} of {total} bytes")
    if total is not None and size > total:
        _drop(part, meta)
        raise InputError(f"size mismatch: received {size} bytes, the server announced {total}; the download was removed", url)


def verify(path: Path, name: str, checksum: tuple[str, str] | None, check_gzip: bool = True) -> None:
    """Raise InputError when ``path`` fails its checksum or (``.gz``) its gzip CRC."""
    if checksum is not None:
        algo, want = checksum
        h = hashlib.new(algo)
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(CHUNK), b""):
                h.update(block)
        if h.hexdigest() != want:
            raise InputError(f"{algo} mismatch: expected {want}, got {h.hexdigest()}", name)
    if check_gzip and name.endswith(".gz"):
        try:
            with gzip.open(path, "rb") as fh:
                while fh.read(8 * CHUNK):
                    pass
        except (OSError, EOFError, zlib.error) as err:
            raise InputError(f"corrupt gzip data ({err}); expected a complete .gz file", name) from None


def download(url: str, dest: str | Path, checksum: tuple[str, str] | None = None, retries: int = 3,
             timeout: float = 60.0, backoff: float = 2.0, force: bool = False) -> Path:
    """Fetch ``url`` to ``dest`` through ``dest.part``, resuming and retrying; verify and
    rename into place. A present ``dest`` is kept unless ``force`` or its checksum fails."""
    dest = Path(dest)
    part, meta = dest.with_name(dest.name + ".part"), dest.with_name(dest.name + ".part.json")
    if dest.exists() and not force:
        try:
            verify(dest, dest.name, checksum, check_gzip=False)
            log.info("%s already present (%d bytes)", dest, dest.stat().st_size)
            return dest
        except InputError as err:
            log.warning("%s; downloading it again", err)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if part.exists() and part.stat().st_size:
        log.info("resuming %s at byte %d", url, part.stat().st_size)
    else:
        log.info("downloading %s", url)
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, meta, timeout, dest.name)
            break
        except Transient as err:
            have = part.stat().st_size if part.exists() else 0
            if attempt == retries:
                tries = f"{retries + 1} attempt{'s' if retries else ''}"
                resume = f"; run again to resume from byte {have}" if have else ""
                raise InputError(f"download failed after {tries} ({err}){resume}", url) from None
            log.warning("%s: %s; retrying from byte %d", dest.name, err, have)
            time.sleep(min(backoff * 2 ** attempt, 60))
    try:
        verify(part, dest.name, checksum)
    except InputError as err:
        _drop(part, meta)
        raise InputError(f"{err.message}; the download was removed", url) from None
    os.replace(part, dest)
    _drop(meta)
    log.info("%s: %d bytes", dest, dest.stat().st_size)
    return dest


def write_spec(out: Path, sources: list[Source], species: str, version: str) -> Path:
    """Write (or update the ppi and go sections of) ``out/dataset.yaml``."""
    path = out / "dataset.yaml"
    raw = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.exists() else {}
    files = {s.key: s.dest for s in sources}
    ppi = {**(raw.get("ppi") or {}), "links": files["links"], "aliases": files["aliases"]}
    ppi.setdefault("min_score", 150)
    go = {**(raw.get("go") or {}), "obo": files["obo"], "annotations": files["annotations"]}
    go.setdefault("exclude_words", list(DEFAULT_LEAKAGE_WORDS))
    spec = {"name": raw.get("name", f"string-{version}-{species}"), "ppi": ppi, "go": go}
    spec.update({k: v for k, v in raw.items() if k not in spec})
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def fetch(out: str | Path, species: str = "9606", version: str = "v12.0", checksums: dict | None = None,
          retries: int = 3, timeout: float = 60.0, backoff: float = 2.0, force: bool = False, **urls) -> Path:
    """Download every source of ``species`` into ``out`` and return ``out/dataset.yaml``."""
    from genen_dgl.data.spec import load_spec

    out = Path(out)
    sources = plan(species, version, **urls)
    for s in sources:
        name = Path(s.dest).name
        download(s.url, out / s.dest, (checksums or {}).get(name), retries, timeout, backoff, force)
    path = write_spec(out, sources, species, version if version.startswith("v") else f"v{version}")
    load_spec(path)  # the written spec must load
    log.info("wrote %s", path)
    return path


@cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genen_dgl.data.fetch", description=__doc__.split("\n\n")[0])
    add_version(parser)
    parser.add_argument("--species", default="9606", help="NCBI taxon id (default 9606, human)")
    parser.add_argument("--out", type=Path, required=True, help="folder to download into")
    parser.add_argument("--string-version", default="v12.0", help="STRING version (default v12.0)")
    parser.add_argument("--string-url", help=f"STRING download base with its layout (default {STRING_URL})")
    parser.add_argument("--go-url", help=f"URL of the OBO file (default {GO_URL})")
    parser.add_argument("--gaf-url", help=f"URL of the GAF file (default {GAF_BASE}/<species file>)")
    parser.add_argument("--mirror", help="base URL holding every file by name (overridden by the options above)")
    parser.add_argument("--checksums", type=Path, help="sha256sum/md5sum output listing files to verify")
    parser.add_argument("--retries", type=int, default=3, help="retries per file after a dropped connection")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds without data before a retry")
    parser.add_argument("--force", action="store_true", help="download again files that are already present")
    args = parser.parse_args(argv)
    if args.retries < 0:
        raise InputError(f"--retries {args.retries}: expected 0 or more")
    if not args.timeout > 0:
        raise InputError(f"--timeout {args.timeout:g}: expected seconds above 0")
    for option in ("mirror", "string_url", "go_url", "gaf_url"):
        url = getattr(args, option)
        parts = urllib.parse.urlsplit(url or "")
        if url is not None and (parts.scheme not in ("http", "https", "ftp", "file") or not parts.netloc + parts.path):
            raise InputError(f"--{option.replace('_', '-')} {url!r}: expected a URL (https://..., file:///...)")
    sums = read_checksums(args.checksums) if args.checksums else None
    path = fetch(args.out, args.species, args.string_version, sums, args.retries, args.timeout, force=args.force,
                 string_url=args.string_url, go_url=args.go_url, gaf_url=args.gaf_url, mirror=args.mirror)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
