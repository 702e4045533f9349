#!/usr/bin/env python3
"""The import graph of src/: which file uses which (by `use` lines and crate::/super:: paths,
following `pub use` re-exports to the file that defines an item), then the mutual imports
("import circles") and the cycles among files. Test modules do not count.

    python3 scripts/import_circles.py        # src/
"""
import os, re, sys
from itertools import combinations

root = sys.argv[1] if len(sys.argv) > 1 else 'src'

def mod_of(path):
    rel = os.path.relpath(path, root)[:-3]
    parts = rel.split(os.sep)
    if parts[-1] in ('mod', 'lib'):
        parts = parts[:-1]
    return tuple(parts)

files = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith('.rs'):
            p = os.path.join(d, f)
            files[mod_of(p)] = p

def strip(text):
    """The code without comments."""
    text = re.sub(r'//[^\n]*', '', text)
    return re.sub(r'/\*.*?\*/', '', text, flags=re.S)

def cut_tests(text):
    """The code before its test module."""
    m = re.search(r'#\[cfg\(test\)\]\s*mod tests\s*\{', text)
    return text[:m.start()] if m else text

def expand_use(body):
    # expand a use tree `a::b::{c, d::{e, f}}` into paths
    body = body.strip()
    m = re.match(r'^(.*?)\{(.*)\}$', body, re.S)
    if not m:
        return [body]
    prefix, inner = m.group(1), m.group(2)
    items, depth, cur = [], 0, ''
    for ch in inner:
        if ch == '{': depth += 1
        if ch == '}': depth -= 1
        if ch == ',' and depth == 0:
            items.append(cur); cur = ''
        else:
            cur += ch
    items.append(cur)
    out = []
    for it in items:
        it = it.strip()
        if not it: continue
        for e in expand_use(it):
            out.append(prefix + e)
    return out

def absolute(mod, path):
    parts = [p.strip() for p in path.split('::')]
    parts = [re.sub(r'\s+as\s+\w+$', '', p) for p in parts]
    if parts[0] == 'crate':
        return tuple(parts[1:])
    if parts[0] == 'self':
        return mod + tuple(parts[1:])
    if parts[0] == 'super':
        base = list(mod)
        while parts and parts[0] == 'super':
            base = base[:-1]; parts = parts[1:]
        return tuple(base) + tuple(parts)
    return None

texts = {m: cut_tests(strip(open(p).read())) for m, p in files.items()}
uses = {}
reexports = {}
for m, t in texts.items():
    lst = []
    for um in re.finditer(r'(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);', t):
        for path in expand_use(um.group(2)):
            a = absolute(m, path)
            if a is None: continue
            lst.append(a)
            if um.group(1):
                name = re.sub(r'.*\s+as\s+', '', path.split('::')[-1].strip())
                reexports.setdefault(m, {})[name] = a
    # inline paths: crate::a::b::C and super::X
    for pm in re.finditer(r'\b((?:crate|super)(?:::\w+)+)', t):
        a = absolute(m, pm.group(1))
        if a: lst.append(a)
    uses[m] = lst

def resolve(path, seen=0):
    # longest module prefix that is a file, then follow re-exports of the next segment
    for k in range(len(path), -1, -1):
        if path[:k] in files:
            mod = path[:k]
            rest = path[k:]
            if rest and mod in reexports and rest[0] in reexports[mod] and seen < 10:
                target = reexports[mod][rest[0]]
                return resolve(target + rest[1:], seen + 1)
            return mod
    return None

edges = {m: set() for m in files}
for m, lst in uses.items():
    for a in lst:
        r = resolve(a)
        if r is not None and r != m and r != ():
            edges[m].add(r)

# mutual pairs, ignoring parent<->child re-export edges (mod.rs naming its own children)
pairs = []
for a, b in combinations(sorted(files), 2):
    if b in edges[a] and a in edges[b]:
        pairs.append((a, b))
def name(m): return '/'.join(m) or 'lib'
for a, b in pairs:
    print('circle:', name(a), '<->', name(b))
print('import circles (mutual pairs):', len(pairs))
# SCCs
index = {}; low = {}; stack = []; on = set(); sccs = []; counter = [0]
sys.setrecursionlimit(10000)
def strong(v):
    index[v] = low[v] = counter[0]; counter[0] += 1; stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(comp)
for v in files:
    if v not in index: strong(v)
for c in sccs:
    print('cycle group:', ', '.join(sorted(name(m) for m in c)))
print('cycle groups (strongly connected, size > 1):', len(sccs))
