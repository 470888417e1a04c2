//! Cycles in a directed graph: each strongly connected component of more
//! than one node, and one shortest cycle through it to name it by.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A directed graph: each node and the nodes it has an edge to.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// A circle of nodes that reach each other: `members` in name order, and
/// `cycle`, a shortest cycle through the first member (`cycle[0]` has an
/// edge to `cycle[1]`, ..., the last back to `cycle[0]`).
#[derive(Debug, PartialEq, Eq)]
pub struct Circle {
    pub members: Vec<String>,
    pub cycle: Vec<String>,
}

/// Every circle of `graph`, ordered by their first member. A node's edge to
/// itself is a circle of one.
pub fn circles(graph: &Graph) -> Vec<Circle> {
    let mut circles: Vec<Circle> = components(graph)
        .into_iter()
        .filter(|members| {
            members.len() > 1
                || graph
                    .get(&members[0])
                    .is_some_and(|to| to.contains(&members[0]))
        })
        .map(|members| {
            let cycle = shortest_cycle(graph, &members);
            Circle { members, cycle }
        })
        .collect();
    circles.sort_by(|a, b| a.members.cmp(&b.members));
    circles
}

/// The strongly connected components (Tarjan), each sorted by name.
fn components(graph: &Graph) -> Vec<Vec<String>> {
    struct Search<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<Vec<String>>,
    }
    impl<'a> Search<'a> {
        fn visit(&mut self, node: &'a str) {
            let index = self.index.len();
            self.index.insert(node, index);
            self.low.insert(node, index);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flatten() {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    self.low.insert(node, self.low[node].min(self.low[next]));
                } else if self.on_stack.contains(next) {
                    self.low.insert(node, self.low[node].min(self.index[next]));
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack.remove(member);
                    component.push(member.to_string());
                    if member == node {
                        break;
                    }
                }
                component.sort();
                self.components.push(component);
            }
        }
    }
    let mut search = Search {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    let nodes = graph
        .iter()
        .flat_map(|(from, to)| std::iter::once(from).chain(to))
        .collect::<BTreeSet<_>>();
    for node in nodes {
        if !search.index.contains_key(node.as_str()) {
            search.visit(node);
        }
    }
    search.components
}

/// A shortest cycle through `members[0]` that stays among `members`
/// (breadth-first from it back to it).
fn shortest_cycle(graph: &Graph, members: &[String]) -> Vec<String> {
    let start = &members[0];
    let inside = members.iter().collect::<BTreeSet<_>>();
    let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for next in graph.get(node).into_iter().flatten() {
            if next == start {
                let mut cycle = vec![node.clone()];
                let mut at = node;
                while at != start {
                    at = came_from[at];
                    cycle.push(at.clone());
                }
                cycle.reverse();
                return cycle;
            }
            if inside.contains(next) && !came_from.contains_key(next) {
                came_from.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    unreachable!("the members of a strongly connected component reach each other")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &str)]) -> Graph {
        let mut graph = Graph::new();
        for (from, to) in edges {
            graph
                .entry(from.to_string())
                .or_default()
                .insert(to.to_string());
        }
        graph
    }

    fn circle(members: &[&str], cycle: &[&str]) -> Circle {
        Circle {
            members: members.iter().map(|m| m.to_string()).collect(),
            cycle: cycle.iter().map(|m| m.to_string()).collect(),
        }
    }

    #[test]
    fn a_graph_without_cycles_has_no_circles() {
        // A diamond and a chain: every node is reached twice, none again.
        let graph = graph(&[("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "e")]);
        assert_eq!(circles(&graph), vec![]);
    }

    #[test]
    fn two_modules_that_import_each_other_are_a_circle() {
        let graph = graph(&[("bench", "lab"), ("lab", "bench"), ("lab", "netns")]);
        assert_eq!(
            circles(&graph),
            vec![circle(&["bench", "lab"], &["bench", "lab"])]
        );
    }

    #[test]
    fn a_circle_is_named_by_its_shortest_cycle() {
        // a -> b -> c -> d -> a and the shortcut b -> a: all four reach each
        // other, and the shortest way round from a is a -> b -> a.
        let graph = graph(&[("a", "b"), ("b", "c"), ("c", "d"), ("d", "a"), ("b", "a")]);
        assert_eq!(
            circles(&graph),
            vec![circle(&["a", "b", "c", "d"], &["a", "b"])]
        );
    }

    #[test]
    fn separate_circles_are_reported_each_and_tails_are_left_out() {
        // x leads into the circle a -> b -> c -> a and out of it to y; p and q
        // form another circle.
        let graph = graph(&[
            ("x", "a"),
            ("a", "b"),
            ("b", "c"),
            ("c", "a"),
            ("c", "y"),
            ("q", "p"),
            ("p", "q"),
        ]);
        assert_eq!(
            circles(&graph),
            vec![
                circle(&["a", "b", "c"], &["a", "b", "c"]),
                circle(&["p", "q"], &["p", "q"]),
            ]
        );
    }

    #[test]
    fn an_edge_to_itself_is_a_circle_of_one() {
        let graph = graph(&[("a", "a"), ("a", "b")]);
        assert_eq!(circles(&graph), vec![circle(&["a"], &["a"])]);
    }
}
