//! Which of a crate's modules import which: the `crate::`, `super::` and
//! `self::` paths of every file (in `use` and in code), each resolved through
//! the `use`s of the modules it passes to the module that defines the item.
//! A path from one module to another is an edge between the two children of
//! their closest common ancestor: `bench/run/labs.rs` naming `crate::lab::Mode`
//! is the edge bench -> lab among the crate's top-level modules,
//! `bench/run/load.rs` naming `super::super::analysis::Results` the edge
//! run -> analysis among bench's. A module naming its own descendants or
//! ancestors is no edge: a parent re-exports its children, and its children
//! share what it defines. Test code (`#[cfg(test)]` items and modules) is
//! left out.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt, fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow, bail};
use proc_macro2::{TokenStream, TokenTree};
use syn::{Attribute, Item, UseTree, visit::Visit};

use crate::cycles::Graph;

/// A module's place in the crate: `["bench", "run"]`; the root is `[]`.
type ModulePath = Vec<String>;

/// One path in the source, where it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Witness {
    /// The file, relative to the crate's `src/`.
    pub file: PathBuf,
    pub line: usize,
    /// The path as written, `crate::lab::Mode`.
    pub path: String,
}

impl fmt::Display for Witness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} {}", self.file.display(), self.line, self.path)
    }
}

/// The imports between the children of one module: each edge (importer,
/// imported) and the paths that make it.
pub type Edges = BTreeMap<(String, String), Vec<Witness>>;

/// Reads the crate whose root file is `lib_rs` and every module file it
/// declares: for each module that has children (`[]` for the crate root), the
/// imports between them.
pub fn read(lib_rs: &Path) -> Result<BTreeMap<ModulePath, Edges>> {
    let src = lib_rs
        .parent()
        .ok_or_else(|| anyhow!("{} has no directory", lib_rs.display()))?;
    let mut crate_modules = Crate {
        src: src.to_path_buf(),
        modules: BTreeMap::new(),
        references: Vec::new(),
    };
    crate_modules.read_file(lib_rs, Vec::new(), true)?;
    Ok(crate_modules.edges())
}

/// The edges, without their paths, as a graph.
pub fn graph(edges: &Edges) -> Graph {
    let mut graph = Graph::new();
    for (from, to) in edges.keys() {
        graph.entry(from.clone()).or_default().insert(to.clone());
    }
    graph
}

/// What a module holds that a path can pass through.
#[derive(Default)]
struct Module {
    /// Its child modules (files and inline `mod`s, not test ones).
    children: BTreeSet<String>,
    /// Its module-level `use`s: the name each brings in and the path it
    /// names, as written (made absolute once every module is read).
    imports: BTreeMap<String, Vec<String>>,
}

/// A `crate::`/`super::`/`self::` path (or one starting with a child module's
/// name) in module `from`.
struct Reference {
    from: ModulePath,
    segments: Vec<String>,
    witness: Witness,
}

struct Crate {
    src: PathBuf,
    modules: BTreeMap<ModulePath, Module>,
    references: Vec<Reference>,
}

impl Crate {
    /// Reads `file`, the module at `path`; `owns_directory` when its child
    /// modules' files are beside it (lib.rs, mod.rs) rather than in a
    /// directory named after it.
    fn read_file(&mut self, file: &Path, path: ModulePath, owns_directory: bool) -> Result<()> {
        let text =
            fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let syntax =
            syn::parse_file(&text).with_context(|| format!("parsing {}", file.display()))?;
        let children_dir = if owns_directory {
            file.parent().map(Path::to_path_buf)
        } else {
            file.parent()
                .zip(file.file_stem())
                .map(|(dir, stem)| dir.join(stem))
        }
        .ok_or_else(|| anyhow!("{} has no directory", file.display()))?;
        let relative = file.strip_prefix(&self.src).unwrap_or(file).to_path_buf();
        self.read_items(&syntax.items, &relative, &children_dir, path)
    }

    fn read_items(
        &mut self,
        items: &[Item],
        file: &Path,
        children_dir: &Path,
        path: ModulePath,
    ) -> Result<()> {
        self.modules.entry(path.clone()).or_default();
        for item in items {
            match item {
                Item::Mod(module) if is_test(&module.attrs) => {}
                Item::Mod(module) => {
                    let name = module.ident.to_string();
                    self.module_mut(&path).children.insert(name.clone());
                    let mut child = path.clone();
                    child.push(name.clone());
                    match &module.content {
                        Some((_, items)) => {
                            self.read_items(items, file, &children_dir.join(&name), child)?
                        }
                        None => {
                            let flat = children_dir.join(format!("{name}.rs"));
                            let nested = children_dir.join(&name).join("mod.rs");
                            if flat.is_file() {
                                self.read_file(&flat, child, false)?;
                            } else if nested.is_file() {
                                self.read_file(&nested, child, true)?;
                            } else {
                                bail!(
                                    "{}: mod {name}: neither {} nor {} exists",
                                    file.display(),
                                    flat.display(),
                                    nested.display()
                                );
                            }
                        }
                    }
                }
                Item::Use(item_use) if is_test(&item_use.attrs) => {}
                Item::Use(item_use) => {
                    let mut leaves = Vec::new();
                    use_leaves(&item_use.tree, Vec::new(), &mut leaves);
                    for (name, segments, line) in leaves {
                        self.reference(&path, file, segments.clone(), line);
                        if let Some(name) = name {
                            self.module_mut(&path).imports.insert(name, segments);
                        }
                    }
                }
                item if is_test(item_attrs(item)) => {}
                item => {
                    let mut visitor = CodeVisitor { found: Vec::new() };
                    visitor.visit_item(item);
                    for (segments, line) in visitor.found {
                        self.reference(&path, file, segments, line);
                    }
                }
            }
        }
        Ok(())
    }

    fn module_mut(&mut self, path: &ModulePath) -> &mut Module {
        self.modules.entry(path.clone()).or_default()
    }

    fn reference(&mut self, from: &ModulePath, file: &Path, segments: Vec<String>, line: usize) {
        let witness = Witness {
            file: file.to_path_buf(),
            line,
            path: segments.join("::"),
        };
        self.references.push(Reference {
            from: from.clone(),
            segments,
            witness,
        });
    }

    /// `segments`, written in module `from`, as a path from the crate root;
    /// `None` for a path into another crate.
    fn absolute(&self, from: &ModulePath, segments: &[String]) -> Option<Vec<String>> {
        let (first, rest) = segments.split_first()?;
        let mut base = match first.as_str() {
            "crate" => Vec::new(),
            "self" => from.clone(),
            "super" => from[..from.len().checked_sub(1)?].to_vec(),
            _ => {
                let module = self.modules.get(from)?;
                if module.children.contains(first) {
                    let mut base = from.clone();
                    base.push(first.clone());
                    base
                } else {
                    // A name this module imports, used as a path's start
                    // (`use a::b; use b::c;`); `use std;` names itself.
                    let imported = module.imports.get(first)?;
                    if imported.first() == Some(first) {
                        return None;
                    }
                    let mut path = self.absolute(from, imported)?;
                    path.extend(rest.iter().cloned());
                    return Some(path);
                }
            }
        };
        let mut rest = rest;
        if first == "super" {
            while let Some(("super", after)) = rest.split_first().map(|(s, r)| (s.as_str(), r)) {
                base.pop()?;
                rest = after;
            }
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The module that defines what the absolute `path` names, following the
    /// `use`s of each module it passes; `None` when it leads out of the crate.
    fn defining_module(&self, mut path: Vec<String>) -> Option<ModulePath> {
        // A chain of re-exports is a few links long; the bound stops a `use`
        // that names itself.
        for _ in 0..32 {
            let mut module = Vec::new();
            let mut next = None;
            for (index, segment) in path.iter().enumerate() {
                let current = self.modules.get(&module)?;
                if current.children.contains(segment) {
                    module.push(segment.clone());
                } else {
                    if let Some(imported) = current.imports.get(segment) {
                        let mut followed = self.absolute(&module, imported)?;
                        followed.extend(path[index + 1..].iter().cloned());
                        next = Some(followed);
                    }
                    break;
                }
            }
            match next {
                Some(followed) => path = followed,
                None => return Some(module),
            }
        }
        None
    }

    fn edges(self) -> BTreeMap<ModulePath, Edges> {
        let mut by_parent: BTreeMap<ModulePath, Edges> = BTreeMap::new();
        for (path, module) in &self.modules {
            if !module.children.is_empty() {
                by_parent.entry(path.clone()).or_default();
            }
        }
        for reference in &self.references {
            let Some(target) = self
                .absolute(&reference.from, &reference.segments)
                .and_then(|path| self.defining_module(path))
            else {
                continue;
            };
            let common = reference
                .from
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if let (Some(from), Some(to)) = (reference.from.get(common), target.get(common)) {
                by_parent
                    .entry(target[..common].to_vec())
                    .or_default()
                    .entry((from.clone(), to.clone()))
                    .or_default()
                    .push(reference.witness.clone());
            }
        }
        by_parent
    }
}

/// Each name a `use` tree brings in (`None` for a glob), the path it names
/// and its line.
fn use_leaves(
    tree: &UseTree,
    prefix: Vec<String>,
    leaves: &mut Vec<(Option<String>, Vec<String>, usize)>,
) {
    let with = |segment: String| {
        let mut path = prefix.clone();
        path.push(segment);
        path
    };
    match tree {
        UseTree::Path(path) => use_leaves(&path.tree, with(path.ident.to_string()), leaves),
        UseTree::Name(name) if name.ident == "self" => {
            let line = name.ident.span().start().line;
            leaves.push((prefix.last().cloned(), prefix.clone(), line));
        }
        UseTree::Name(name) => {
            let line = name.ident.span().start().line;
            leaves.push((
                Some(name.ident.to_string()),
                with(name.ident.to_string()),
                line,
            ));
        }
        UseTree::Rename(rename) => {
            let line = rename.ident.span().start().line;
            let path = if rename.ident == "self" {
                prefix.clone()
            } else {
                with(rename.ident.to_string())
            };
            leaves.push((Some(rename.rename.to_string()), path, line));
        }
        UseTree::Glob(glob) => {
            leaves.push((None, prefix.clone(), glob.star_token.spans[0].start().line))
        }
        UseTree::Group(group) => {
            for tree in &group.items {
                use_leaves(tree, prefix.clone(), leaves);
            }
        }
    }
}

/// Whether `attrs` hold `#[cfg(test)]`.
fn is_test(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg")
            && attr
                .parse_args::<syn::Ident>()
                .is_ok_and(|ident| ident == "test")
    })
}

fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(item) => &item.attrs,
        Item::Enum(item) => &item.attrs,
        Item::ExternCrate(item) => &item.attrs,
        Item::Fn(item) => &item.attrs,
        Item::ForeignMod(item) => &item.attrs,
        Item::Impl(item) => &item.attrs,
        Item::Macro(item) => &item.attrs,
        Item::Mod(item) => &item.attrs,
        Item::Static(item) => &item.attrs,
        Item::Struct(item) => &item.attrs,
        Item::Trait(item) => &item.attrs,
        Item::TraitAlias(item) => &item.attrs,
        Item::Type(item) => &item.attrs,
        Item::Union(item) => &item.attrs,
        Item::Use(item) => &item.attrs,
        _ => &[],
    }
}

/// The paths of length two or more in an item's code and macro arguments,
/// and the paths of `use`s inside it (a function's own imports).
struct CodeVisitor {
    found: Vec<(Vec<String>, usize)>,
}

impl<'ast> Visit<'ast> for CodeVisitor {
    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() && path.segments.len() > 1 {
            let segments = path
                .segments
                .iter()
                .map(|segment| segment.ident.to_string())
                .collect();
            self.found
                .push((segments, path.segments[0].ident.span().start().line));
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_item_use(&mut self, item_use: &'ast syn::ItemUse) {
        let mut leaves = Vec::new();
        use_leaves(&item_use.tree, Vec::new(), &mut leaves);
        self.found
            .extend(leaves.into_iter().map(|(_, path, line)| (path, line)));
    }

    fn visit_item_mod(&mut self, module: &'ast syn::ItemMod) {
        if !is_test(&module.attrs) {
            syn::visit::visit_item_mod(self, module);
        }
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.found.extend(macro_paths(mac.tokens.clone()));
        syn::visit::visit_macro(self, mac);
    }
}

/// `crate::a::b`, `super::a` and `self::a` sequences in a macro's tokens,
/// which syn leaves unparsed.
fn macro_paths(tokens: TokenStream) -> Vec<(Vec<String>, usize)> {
    let mut found = Vec::new();
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut index = 0;
    while index < tokens.len() {
        match &tokens[index] {
            TokenTree::Group(group) => found.extend(macro_paths(group.stream())),
            TokenTree::Ident(ident)
                if ["crate", "super", "self"].contains(&&*ident.to_string()) =>
            {
                let line = ident.span().start().line;
                let mut segments = vec![ident.to_string()];
                while let [
                    TokenTree::Punct(first),
                    TokenTree::Punct(second),
                    TokenTree::Ident(next),
                    ..,
                ] = &tokens[index + 1..]
                {
                    if first.as_char() != ':' || second.as_char() != ':' {
                        break;
                    }
                    segments.push(next.to_string());
                    index += 3;
                }
                if segments.len() > 1 {
                    found.push((segments, line));
                }
            }
            _ => {}
        }
        index += 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A crate written to a directory of its own, removed on drop.
    struct HandMadeCrate(PathBuf);

    impl HandMadeCrate {
        fn new(name: &str, files: &[(&str, &str)]) -> Self {
            let dir = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
            for (path, text) in files {
                let path = dir.join(path);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(path, text).unwrap();
            }
            Self(dir)
        }
    }

    impl Drop for HandMadeCrate {
        fn drop(&mut self) {
            fs::remove_dir_all(&self.0).unwrap();
        }
    }

    /// Each parent's edges, with the files that make each.
    fn edges_by_file(graphs: &BTreeMap<ModulePath, Edges>) -> BTreeMap<String, Vec<String>> {
        let mut found = BTreeMap::new();
        for (parent, edges) in graphs {
            for ((from, to), witnesses) in edges {
                let files: BTreeSet<String> = witnesses
                    .iter()
                    .map(|w| w.file.display().to_string())
                    .collect();
                found.insert(
                    format!("[{}] {from} -> {to}", parent.join("::")),
                    files.into_iter().collect(),
                );
            }
        }
        found
    }

    #[test]
    fn paths_are_resolved_to_the_module_that_defines_what_they_name() {
        let krate = HandMadeCrate::new(
            "imports",
            &[
                ("lib.rs", "pub mod a;\npub mod b;\nmod c;\nmod d;\n"),
                (
                    "a/mod.rs",
                    "mod x;\nmod y;\npub use self::y::Thing;\npub const SHARED: u32 = 1;\n\
                     #[cfg(test)]\nmod tests { use crate::c::helper; }\n",
                ),
                // x names y's Thing through a's re-export, and a's own
                // constant; c only in code, d only in a macro.
                (
                    "a/x.rs",
                    "use super::{SHARED, Thing};\n\
                     fn f() -> u32 { crate::c::helper(); let t: Thing = Thing; SHARED }\n\
                     fn g() -> Vec<u32> { vec![crate::d::D] }\n",
                ),
                ("a/y.rs", "use super::super::b::B;\npub struct Thing;\n"),
                // b re-exports a's Thing: naming crate::b::Thing is naming a.
                ("b.rs", "pub struct B;\npub use crate::a::Thing;\n"),
                (
                    "c.rs",
                    "use crate::b::Thing;\nuse std::fmt;\npub fn helper() {}\n\
                     #[cfg(test)]\nfn only_in_tests() { crate::b::B; }\n",
                ),
                ("d.rs", "pub const D: u32 = 4;\n"),
            ],
        );
        let graphs = read(&krate.0.join("lib.rs")).unwrap();
        let expected: BTreeMap<String, Vec<String>> = [
            ("[] a -> b", vec!["a/y.rs"]),
            ("[] a -> c", vec!["a/x.rs"]),
            ("[] a -> d", vec!["a/x.rs"]),
            ("[] b -> a", vec!["b.rs"]),
            ("[] c -> a", vec!["c.rs"]),
            ("[a] x -> y", vec!["a/x.rs"]),
        ]
        .into_iter()
        .map(|(edge, files)| {
            (
                edge.to_string(),
                files.iter().map(|f| f.to_string()).collect(),
            )
        })
        .collect();
        assert_eq!(edges_by_file(&graphs), expected);
    }

    #[test]
    fn a_module_file_that_is_missing_is_an_error() {
        let krate = HandMadeCrate::new("missing", &[("lib.rs", "mod gone;\n")]);
        let error = read(&krate.0.join("lib.rs")).unwrap_err();
        assert!(
            format!("{error:#}").contains("mod gone: neither"),
            "{error:#}"
        );
    }
}
