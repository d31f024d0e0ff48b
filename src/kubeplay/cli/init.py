"""`kubeplay init`: write a commented bundle.yaml for a kubespray release."""

# ruff: noqa: PLC0415  (kubeplay subpackages are imported in the command that uses them: fast start-up)

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kubeplay.cli.output import command_output
from kubeplay.errors import BadInput

if TYPE_CHECKING:
    from kubeplay.catalog.starter import ReleaseFacts


def host_debian12_sources() -> list[tuple[str, list[str]]]:
    """The build host's apt sources for bookworm when the host is Debian 12 (the default OS target), else none."""
    from kubeplay.osrepo.host_sources import host_sources_for

    try:
        os_release = Path("/etc/os-release").read_text(encoding="utf-8")
    except OSError:
        return []
    fields = dict(line.split("=", 1) for line in os_release.splitlines() if "=" in line)
    if fields.get("ID", "").strip('"') != "debian" or fields.get("VERSION_ID", "").strip('"') != "12":
        return []
    return [(src.uri, list(src.suites)) for src in host_sources_for("bookworm")]


def facts_for_source(source: str, sha256: str | None) -> tuple[ReleaseFacts, str | None]:
    """Release facts and the archive's sha256; a URL is read from kubeplay's cache when it is there."""
    from kubeplay.catalog.release import is_url, version_from_source
    from kubeplay.catalog.source import archive_cache, is_archive, load_tree
    from kubeplay.catalog.starter import ReleaseFacts, release_facts

    if is_url(source):
        cached = archive_cache(None) / sha256 if sha256 else None
        if cached is not None and (cached / ".complete").exists():
            return release_facts(load_tree(cached)), sha256
        version = version_from_source(source)
        return ReleaseFacts(version, None, (), None, None, None), sha256
    path = Path(source).expanduser()
    tree = load_tree(path, sha256)
    return release_facts(tree), tree.sha256 if is_archive(path) else sha256


def check_against_release(
    facts: ReleaseFacts, plugins: list[str] | None, managers: list[str] | None, kube_version: str | None
) -> None:
    """Refuse values the release itself would reject, naming the ones it accepts."""
    label = f"kubespray {facts.version}"
    if facts.choices is not None:
        for option, values, valid in (
            ("--network-plugin", plugins or [], facts.choices.network_plugins),
            ("--container-manager", managers or [], facts.choices.container_managers),
        ):
            for value in values:
                if value not in valid:
                    raise BadInput(f"{option}: unknown value {value!r}; {label} accepts: {', '.join(valid)}")
    if kube_version and facts.kube_versions and kube_version.removeprefix("v") not in facts.kube_versions:
        raise BadInput(
            f"--kube-version: {kube_version} is not in {label}'s checksum tables; "
            f"supported: {', '.join(facts.kube_versions)}"
        )


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init_command(
        ctx: typer.Context,
        kubespray: Annotated[str, typer.Option("--kubespray", help="kubespray release: URL, .tar.gz or directory.")],
        output_path: Annotated[Path, typer.Option("--output", "-o", help="File to write.")] = Path("bundle.yaml"),
        sha256: Annotated[
            str | None, typer.Option("--sha256", help="sha256 of the archive (checked when local).")
        ] = None,
        arch: Annotated[list[str] | None, typer.Option("--arch", help="Node arch (repeatable); default amd64.")] = None,
        network_plugin: Annotated[
            list[str] | None, typer.Option("--network-plugin", help="Repeatable; default: the release's.")
        ] = None,
        container_manager: Annotated[
            list[str] | None, typer.Option("--container-manager", help="Repeatable; default: the release's.")
        ] = None,
        kube_version: Annotated[str | None, typer.Option("--kube-version", help="Default: the release's.")] = None,
        force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    ) -> None:
        """Write a commented bundle.yaml for a kubespray release (defaults taken from the release itself)."""
        from kubeplay.catalog.planner import check_arches
        from kubeplay.catalog.release import is_url
        from kubeplay.catalog.starter import render_bundle_yaml
        from kubeplay.config.bundle import load_bundle_spec
        from kubeplay.state import atomic_write

        output = command_output(ctx)
        if output_path.exists() and not force:
            raise BadInput(f"{output_path} exists; not overwriting it", hint="pass --force, or choose -o another path")
        facts, digest = facts_for_source(kubespray, sha256.lower().removeprefix("sha256:") if sha256 else None)
        source = kubespray
        if not is_url(kubespray):
            # Absolute, so `kubeplay plan` works from any directory.
            source = str(Path(kubespray).expanduser().resolve())
        check_against_release(facts, network_plugin, container_manager, kube_version)
        text = render_bundle_yaml(
            facts=facts,
            source=source,
            sha256=digest,
            arches=check_arches(arch or ["amd64"]),
            network_plugins=network_plugin or None,
            container_managers=container_manager or None,
            kube_version=kube_version.removeprefix("v") if kube_version else None,
            os_sources=host_debian12_sources(),
        )
        atomic_write(output_path, text.encode("utf-8"))
        load_bundle_spec(output_path)  # what init writes must load; a failure here is a kubeplay bug
        output.summary(f"wrote {output_path} for kubespray {facts.version or kubespray}")
