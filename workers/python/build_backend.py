"""A PEP 517 build backend for procpool_worker, standard library only.

pip runs it for ``pip install workers/python``: it builds a wheel (and an
sdist) holding the one module, procpool_worker.py, with its metadata. It
needs no package from an index, so installing works offline.
"""

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile

NAME = "procpool_worker"
DIST = "procpool-worker"
HERE = os.path.dirname(os.path.abspath(__file__))
FILES = ("procpool_worker.py", "README.md", "pyproject.toml", "build_backend.py")


def _version():
    with open(os.path.join(HERE, NAME + ".py"), encoding="utf-8") as f:
        m = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M)
    return m.group(1)


def _metadata():
    with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    return ("Metadata-Version: 2.1\nName: %s\nVersion: %s\n"
            "Summary: Serve procpool tasks from Python: the worker side of a Go program's pool of processes\n"
            "Requires-Python: >=3.9\nProvides-Extra: cbor2\nRequires-Dist: cbor2>=5.4; extra == \"cbor2\"\n"
            "Description-Content-Type: text/markdown\n\n%s" % (DIST, _version(), readme))


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (path, digest, len(data))


def _dist_info(meta_dir):
    return {
        meta_dir + "/METADATA": _metadata().encode("utf-8"),
        meta_dir + "/WHEEL": b"Wheel-Version: 1.0\nGenerator: procpool build_backend\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        meta_dir + "/top_level.txt": (NAME + "\n").encode(),
    }


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


get_requires_for_build_editable = get_requires_for_build_wheel


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    meta_dir = "%s-%s.dist-info" % (NAME, _version())
    for path, data in _dist_info(meta_dir).items():
        full = os.path.join(metadata_directory, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)
    return meta_dir


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def _wheel(wheel_directory, files):
    version = _version()
    meta_dir = "%s-%s.dist-info" % (NAME, version)
    name = "%s-%s-py3-none-any.whl" % (NAME, version)
    entries = dict(files)
    entries.update(_dist_info(meta_dir))
    record = [_record_line(p, d) for p, d in entries.items()] + [meta_dir + "/RECORD,,"]
    entries[meta_dir + "/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in entries.items():
            z.writestr(path, data)
    return name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    with open(os.path.join(HERE, NAME + ".py"), "rb") as f:
        return _wheel(wheel_directory, {NAME + ".py": f.read()})


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    # A path file that puts this directory on sys.path.
    return _wheel(wheel_directory, {"__editable__.%s.pth" % NAME: (HERE + "\n").encode()})


def build_sdist(sdist_directory, config_settings=None):
    base = "%s-%s" % (DIST.replace("-", "_"), _version())
    name = base + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as t:
        for f in FILES:
            t.add(os.path.join(HERE, f), arcname=base + "/" + f)
        pkg = _metadata().encode("utf-8")
        info = tarfile.TarInfo(base + "/PKG-INFO")
        info.size = len(pkg)
        t.addfile(info, io.BytesIO(pkg))
    return name
