"""`hwnas --help` and every command's `--help` import nothing heavy; registries know their names before import."""
import json
import subprocess
import sys
import textwrap

import pytest

from hwnas.errors import HwnasError
from hwnas.registry import DeclarationError, Registry

HEAVY = ("torch", "onnxruntime", "sklearn", "onnx", "optuna", "scipy", "ray", "pandas", "sqlalchemy", "matplotlib")


def _run(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_help_imports_nothing_heavy():
    """One fresh process asks every command and subcommand for --help (the group's own first), checking after each
    which heavy libraries are loaded: modules stay loaded, so one import anywhere shows from there on."""
    report = _run(f"""
        import json, sys
        import click
        from click.testing import CliRunner
        from hwnas.cli import cli

        def paths(command, prefix):
            yield prefix
            if isinstance(command, click.Group):
                ctx = click.Context(command)
                for name in command.list_commands(ctx):
                    yield from paths(command.get_command(ctx, name), [*prefix, name])

        out = []
        for args in paths(cli, []):
            result = CliRunner().invoke(cli, [*args, "--help"])
            heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
            out.append({{"args": args, "exit": result.exit_code, "heavy": heavy, "usage": "Usage:" in result.output}})
        print(json.dumps(out))
    """)
    commands = {" ".join(r["args"]) for r in report}
    assert {"", "devices", "profile", "agent serve", "agent token", "measurements list", "measurements export",
            "measurements import", "fit", "predict", "search", "export", "validate", "run"} <= commands
    for r in report:
        assert (r["exit"], r["usage"], r["heavy"]) == (0, True, []), f"hwnas {' '.join(r['args'])} --help: {r}"


def test_the_console_entry_point_help_is_light():
    """The real entry point (hwnas.cli:main), as `hwnas search --help` runs it."""
    report = _run(f"""
        import json, sys
        from hwnas.cli import main
        code = 0  # main returns after --help; it exits only with another status
        try:
            main(["search", "--help"])
        except SystemExit as e:
            code = e.code
        print()
        print(json.dumps({{"exit": code, "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
    """)
    assert report == {"exit": 0, "heavy": []}


def test_declarations_match_the_decorators():
    """After importing every library module, each registry holds exactly its declared names, each registered by the
    declared module, with the declared traits; the constants hwnas.choices keeps agree with the library too."""
    report = _run("""
        import importlib, json
        for module in ("hwnas.spaces", "hwnas.predictors", "hwnas.profilers", "hwnas.profilers.tensorrt",
                       "hwnas.profilers.nvml", "hwnas.search", "hwnas.search.zero_cost", "hwnas.search.multi_objective",
                       "hwnas.search.ray_workers", "hwnas.export"):
            importlib.import_module(module)
        from hwnas import choices
        from hwnas.registries import ALL
        from hwnas.search.quantum import TASKS

        out = {"registries": {}}
        for name, registry in ALL.items():
            registered = {n: getattr(obj, "__module__", None) for n, obj in registry._items.items()}
            same = all(registry.get(n) is registry._items[n] for n in registry.declared())  # also checks traits
            out["registries"][name] = {"registered": registered, "declared": registry.declared(), "get": same}
        predictors = ALL["PREDICTORS"]
        out["cost_predictors"] = [choices.cost_predictor_names(),
                                  [choices.AUTO] + [n for n in predictors.names() if predictors.get(n).differentiable
                                                    or predictors.get(n).additive]]
        out["circuit_tasks"] = [sorted(choices.CIRCUIT_TASKS), sorted(TASKS)]
        print(json.dumps(out))
    """)
    for name, r in report["registries"].items():
        assert r["declared"], name
        assert r["registered"] == r["declared"], name  # same names, each from its declared module
        assert r["get"], name
    assert report["cost_predictors"][0] == report["cost_predictors"][1]
    assert report["circuit_tasks"][0] == report["circuit_tasks"][1]


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A real module on sys.path that registers into `registry` when imported."""
    registry = Registry("widget", traits=("fast",))
    monkeypatch.setattr(sys.modules[__name__], "WIDGETS", registry, raising=False)
    (tmp_path / "hwnas_test_widgets.py").write_text(textwrap.dedent(f"""
        from {__name__} import WIDGETS

        @WIDGETS.register("slow")
        class Slow:
            pass

        @WIDGETS.register("quick")
        class Quick:
            fast = True
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "hwnas_test_widgets", raising=False)
    yield registry
    sys.modules.pop("hwnas_test_widgets", None)


def test_a_declared_name_is_known_before_its_module_is_imported(plugin):
    plugin.declare("slow", "hwnas_test_widgets")
    plugin.declare("quick", "hwnas_test_widgets", fast=True)
    assert plugin.names() == ["quick", "slow"] and "slow" in plugin and "other" not in plugin
    assert plugin.names_with("fast") == ["quick"]
    assert "hwnas_test_widgets" not in sys.modules
    assert plugin.get("slow").__name__ == "Slow"  # imports the module on first use
    assert "hwnas_test_widgets" in sys.modules
    with pytest.raises(HwnasError, match="unknown widget 'other'; known: quick, slow"):
        plugin.get("other")


def test_a_declaration_its_module_contradicts_fails_with_one_line(plugin):
    plugin.declare("missing", "hwnas_test_widgets")
    plugin.declare("quick", "hwnas_test_widgets")  # says not fast; the class says fast
    with pytest.raises(DeclarationError, match="'missing' is declared in hwnas_test_widgets, but importing") as e:
        plugin.get("missing")
    assert "\n" not in str(e.value)
    with pytest.raises(DeclarationError, match=r"'quick': the declaration says \{'fast': False\}"):
        plugin.get("quick")
    with pytest.raises(DeclarationError, match="declared twice"):
        plugin.declare("quick", "hwnas_test_widgets")
    with pytest.raises(DeclarationError, match="unknown trait"):
        plugin.declare("other", "hwnas_test_widgets", heavy=True)


def test_decorator_registration_alone_still_works():
    registry = Registry("gadget", traits=("fast",))

    @registry.register("plugin")
    class Plugin:
        fast = True

    assert registry.get("plugin") is Plugin and registry.names() == ["plugin"]
    assert registry.names_with("fast") == ["plugin"]
    with pytest.raises(RuntimeError, match="registered twice"):
        registry.register("plugin")(Plugin)
