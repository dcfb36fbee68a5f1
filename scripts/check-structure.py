#!/usr/bin/env python3
"""Checks two rules of the code's shape (docs/architecture.md, "Rules of the layout"):

* no module cycle inside a crate: if module `a` uses `b` (through `crate::`, `super::` or
  `self::` paths, grouped `use` trees included), `b` does not use `a`, directly or through
  others. A child using its ancestors' items is no edge; test modules and `*tests.rs` files are
  left out;
* no non-test source file over 600 lines.

Exits 1 naming every cycle (with its edges) and every long file; 0 when there is none.
Usage: python3 scripts/check-structure.py [ROOT] (default: the repository holding this script).
"""

import os
import re
import sys

MAX_LINES = 600
TEST_MOD = re.compile(r"#\[cfg\(test\)\]\s*mod tests\s*\{")
PATH = re.compile(r"\b((?:crate|super|self)(?:::\w+)+)")
USE_TREE = re.compile(r"\buse\s+((?:crate|super|self)(?:::\w+)*)::\{")


def is_test_file(rel):
    name = os.path.basename(rel)
    return name == "tests.rs" or name.endswith("_tests.rs") or "/tests/" in f"/{rel}"


def crate_modules(src):
    """Module path (a tuple) -> file, for every non-test file under `src`."""
    modules = {}
    for dirpath, _, names in os.walk(src):
        for name in names:
            if not name.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), src)
            if is_test_file(rel):
                continue
            parts = tuple(rel[:-3].split(os.sep))
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            modules[parts] = os.path.join(src, rel)
    return modules


def split_top(body):
    """The items of a `use` group, split at its top-level commas."""
    items, depth, current = [], 0, ""
    for ch in body:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    items.append(current)
    return [i.strip() for i in items if i.strip()]


def expand(prefix, body):
    """Every path a `use prefix::{body}` names."""
    paths = []
    for item in split_top(body):
        if "{" in item:
            at = item.index("{")
            head = item[:at].rstrip(":").strip()
            inner = item[at + 1 : item.rindex("}")]
            paths += expand(f"{prefix}::{head}" if head else prefix, inner)
        else:
            item = item.split(" as ")[0].strip()
            paths.append(prefix if item == "self" else f"{prefix}::{item}")
    return paths


def paths_used(text):
    text = re.sub(r"//[^\n]*", "", text)
    text = TEST_MOD.split(text)[0]
    paths = PATH.findall(text)
    for group in USE_TREE.finditer(text):
        start = end = group.end()
        depth = 1
        while depth and end < len(text):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        paths += expand(group.group(1), text[start : end - 1])
    return paths


def edges(modules):
    graph = {}
    for module, file in modules.items():
        deps = set()
        for path in paths_used(open(file, encoding="utf-8").read()):
            segments = path.split("::")
            base = [] if segments[0] == "crate" else list(module)
            rest = segments[1:] if segments[0] == "crate" else segments
            while rest and rest[0] in ("super", "self"):
                if rest[0] == "super":
                    base = base[:-1]
                rest = rest[1:]
            full = base + rest
            target = next(
                (tuple(full[:n]) for n in range(len(full), 0, -1) if tuple(full[:n]) in modules),
                None,
            )
            related = target is not None and (
                module[: len(target)] == target or target[: len(module)] == module
            )
            if target is not None and not related:
                deps.add(target)
        graph[module] = deps
    return graph


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(__file__))
    root = os.path.abspath(root)
    crates = []
    for parent in ("crates", "bin"):
        folder = os.path.join(root, parent)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            if os.path.isdir(os.path.join(folder, name, "src")):
                crates.append(os.path.join(folder, name))
    if not crates:
        print(f"check-structure: no crates under {root}", file=sys.stderr)
        return 1
    failures = 0
    for crate in crates:
        modules = crate_modules(os.path.join(crate, "src"))
        graph = edges(modules)
        name = os.path.relpath(crate, root)
        for component in cycles(graph):
            failures += 1
            members = ", ".join("::".join(m) for m in component)
            print(f"{name}: module cycle among {members}")
            for a in component:
                for b in sorted(graph[a] & set(component)):
                    print(f"    {'::'.join(a)} uses {'::'.join(b)}")
        for file in sorted(modules.values()):
            lines = sum(1 for _ in open(file, encoding="utf-8"))
            if lines > MAX_LINES:
                failures += 1
                print(f"{os.path.relpath(file, root)}: {lines} lines (at most {MAX_LINES})")
    if failures:
        print(f"check-structure: {failures} problem(s)", file=sys.stderr)
        return 1
    print(f"check-structure: {len(crates)} crates, no module cycle, no file over {MAX_LINES} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
