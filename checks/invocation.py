"""Where a run stands: the project's root and ini file, and what it collects when given no paths.

Pure pytest-startup glue, kept out of the hooks file because it reaches into pytest's start-up.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
from pathlib import Path

import pytest
from _pytest.config.findpaths import determine_setup

CHECKS_DIR = Path(__file__).resolve().parent
PROJECT_DIR = CHECKS_DIR.parent


def correct_rootdir(config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """Redo pytest's root/ini discovery now that preflight's options are known.

    pytest finds the rootdir and ini file from the path arguments of a first parse in which
    plugin options are still unknown, so in ``--report-json /tmp/r.json`` (with a space) it takes
    the value for a path: rootdir /tmp, no ini file, no testpaths, no addopts (pytest #8846;
    plugins from entry points load only after that discovery). By this hook the options are
    registered and ``known_args_namespace`` holds the true path arguments: when those point to
    another root or ini file, this puts rootpath, inipath, the ini values and the ini's addopts
    right, before anything reads them.
    """
    ns = config.known_args_namespace
    kwargs = dict(inifile=ns.inifilename, args=ns.file_or_dir, rootdir_cmd_arg=ns.rootdir or None,
                  invocation_dir=config.invocation_params.dir)
    if "override_ini" in inspect.signature(determine_setup).parameters:
        kwargs["override_ini"] = ns.override_ini
    rootpath, inipath, inicfg, *_ = determine_setup(**kwargs)
    if (rootpath, inipath) == (config.rootpath, config.inipath):
        return
    old_addopts = config.getini("addopts")
    if old_addopts and args[:len(old_addopts)] == old_addopts:
        del args[:len(old_addopts)]  # parse() put the wrong ini's addopts first
    config._rootpath, config._inipath = rootpath, inipath
    setattr(config, "_inicfg" if "_inicfg" in vars(config) else "inicfg", inicfg)
    config._inicache.clear()
    parser.extra_info.update(rootdir=str(rootpath), inifile=str(inipath))
    addopts = config.getini("addopts")
    args[:0] = addopts
    config.pluginmanager.consider_preparse(addopts, exclude_only=False)  # e.g. `-p no:anyio`
    given_confcutdir = parser.parse_known_args(args, namespace=copy.copy(config.option)).confcutdir
    config.known_args_namespace = parser.parse_known_args(args, namespace=copy.copy(config.option))
    if given_confcutdir is None:  # parse() derived it from the wrong ini file
        config.known_args_namespace.confcutdir = str(inipath.parent if inipath else rootpath)


def collect_checks_by_default(config: pytest.Config) -> None:
    """`pytest -m phase1` from any folder of this project (but a folder with tests of its own) runs the checks.

    pytest applies ``testpaths`` only in the rootdir; elsewhere it collects the current folder,
    and `cd data && pytest -m phase1` would run nothing. A folder with its own conftest.py
    (``tests/``) keeps pytest's usual collection; another project that installed preflight is
    never touched (its rootdir is not this project): there the checks run with `--pyargs checks`.
    """
    if config.args_source is not pytest.Config.ArgsSource.INVOCATION_DIR or config.rootpath != PROJECT_DIR:
        return
    here = config.invocation_params.dir.resolve()
    if here != PROJECT_DIR and PROJECT_DIR not in here.parents:
        return
    if any((d / "conftest.py").is_file() for d in (here, *here.parents) if d != PROJECT_DIR and PROJECT_DIR in d.parents):
        return
    config.args[:] = [str(CHECKS_DIR)]
    config.args_source = pytest.Config.ArgsSource.TESTPATHS


def runs_checks(config: pytest.Config) -> bool:
    """Does this run collect preflight's checks? (Else the plugin only registers its options and markers.)"""
    for arg in config.args:
        target = arg.split("::")[0]
        if config.option.pyargs and target.split(".")[0] == CHECKS_DIR.name and not Path(target).exists():
            spec = importlib.util.find_spec(CHECKS_DIR.name)
            if spec and spec.origin and Path(spec.origin).resolve().parent == CHECKS_DIR:
                return True
        path = (config.invocation_params.dir / target).resolve()
        if path in (CHECKS_DIR, PROJECT_DIR) or CHECKS_DIR in path.parents:
            return True
    return False
