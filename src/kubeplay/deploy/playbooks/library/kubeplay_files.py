"""Ansible module: write several small files on a node in one module run.

Node prep writes about half a dozen small files (the bundle repo definition and key, the bundle CA twice,
chrony's configuration). With `ansible.builtin.copy` each costs a stat run, a file transfer and a copy
run on the node, plus a worker process on the deploy node: a third of node prep's time on one node, and
the deploy node's CPU is what limits a run on many nodes. Here the contents travel in the module
arguments and one Python run on the node writes them all.

Each file is compared with what is there and replaced atomically only when its bytes differ (the
module's atomic_move keeps SELinux contexts right on EL nodes); the mode is set either way; missing
parent directories are made (0755). The result lists the paths that changed, so a task can react to
one file (the CA anchor, chrony's configuration) and not to the others. `keep_original` names where
the file's first original goes before kubeplay ever replaces it (kept once, never overwritten; reset
restores it). Check mode reports without writing. Runs on the node's Python (3.7 or newer, as
ansible-core requires of targets).
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: kubeplay_files
short_description: Write several small files in one module run
options:
  files:
    description: The files, each with a path, its content (text, or base64 for binary data) and a mode.
    type: list
    elements: dict
    required: true
    suboptions:
      path: {type: path, required: true}
      content: {type: str}
      content_b64: {type: str}
      mode: {type: raw, default: "0644"}
      keep_original: {type: path, description: "where to keep the file as it was, if it exists and nothing is kept there yet"}
"""

RETURN = r"""
changed_paths:
  description: The paths whose content or mode changed (or would, in check mode).
  type: list
  elements: str
kept_paths:
  description: The keep_original paths written in this run (the first original of each file).
  type: list
  elements: str
"""

FILE_OPTIONS: dict[str, Any] = {
    "path": {"type": "path", "required": True},
    "content": {"type": "str"},
    "content_b64": {"type": "str"},
    "mode": {"type": "raw", "default": "0644"},
    "keep_original": {"type": "path"},
}


def file_bytes(module: AnsibleModule, spec: dict[str, Any]) -> bytes:
    if (spec.get("content") is None) == (spec.get("content_b64") is None):
        module.fail_json(msg=f"{spec['path']}: give exactly one of content and content_b64")
    if spec.get("content") is not None:
        return str(spec["content"]).encode("utf-8")
    try:
        return base64.b64decode(str(spec["content_b64"]), validate=True)
    except (binascii.Error, ValueError) as exc:
        module.fail_json(msg=f"{spec['path']}: content_b64 is not base64 ({exc})")
        raise  # fail_json exits; this keeps the type checker and a reader sure of it


def current_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def make_parents(module: AnsibleModule, path: str) -> None:
    parent = os.path.dirname(path)
    if parent and not os.path.isdir(parent):
        try:
            os.makedirs(parent, mode=0o755)
        except OSError as exc:
            module.fail_json(msg=f"cannot create {parent}: {exc}")


def write_atomically(module: AnsibleModule, path: str, data: bytes) -> None:
    parent = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".kubeplay-", dir=parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        os.unlink(tmp)
        module.fail_json(msg=f"cannot write {path}: {exc}")
    module.atomic_move(tmp, path)


def keep_original(module: AnsibleModule, path: str, keep: str, data: bytes) -> bool:
    """Write `data` (the file at `path` as found) to `keep` with the file's mode, unless `keep` exists."""
    if os.path.lexists(keep):
        return False
    make_parents(module, keep)
    write_atomically(module, keep, data)
    os.chmod(keep, os.stat(path).st_mode & 0o7777)
    return True


def main() -> None:
    module = AnsibleModule(
        argument_spec={"files": {"type": "list", "elements": "dict", "required": True, "options": FILE_OPTIONS}},
        supports_check_mode=True,
    )
    changed_paths: list[str] = []
    kept_paths: list[str] = []
    for spec in module.params["files"]:
        path = str(spec["path"])
        data = file_bytes(module, spec)
        exists = current_bytes(path)
        keep = spec.get("keep_original")
        if keep and exists is not None and not module.check_mode and keep_original(module, path, str(keep), exists):
            kept_paths.append(str(keep))
        changed = exists != data
        if changed and not module.check_mode:
            make_parents(module, path)
            write_atomically(module, path, data)
        if exists is not None or not module.check_mode:
            file_args = module.load_file_common_arguments({"path": path, "mode": spec["mode"]})
            changed = module.set_fs_attributes_if_different(file_args, changed)
        if changed:
            changed_paths.append(path)
    module.exit_json(changed=bool(changed_paths or kept_paths), changed_paths=changed_paths, kept_paths=kept_paths)


if __name__ == "__main__":
    main()
