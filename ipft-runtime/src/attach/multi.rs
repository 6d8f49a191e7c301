//! kprobe-multi links: one per program for all the functions it runs on,
//! by address where this boot's earlier links told them (by name, the
//! kernel walks every symbol once per link), learning the addresses the
//! kernel resolved for the next start.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use ipft_abi::program::{kprobe_multi_cookie, kprobe_multi_cookie_row};
use ipft_abi::{Backend, ProbeEntry, ProgramId};

use super::{backend_unusable, reason, LoadError, Progress, Session};
use crate::kernel::{self, raw, raw::MultiTargets};

impl Session {
    /// One kprobe-multi link per program for the rows `ids` (functions and
    /// cookies in one syscall): by address where an earlier link of this
    /// boot told them, else by name, learning the addresses the kernel
    /// resolved for the next start.
    pub(super) fn attach_multi(
        &mut self,
        o: usize,
        prog: ProgramId,
        table: &[ProbeEntry],
        ids: &[usize],
        graph: bool,
    ) -> Result<(), libbpf_rs::Error> {
        let obj = &self.objects[o];
        let mut progs = vec![(prog, false)];
        // Every entry of a group shares the kretprobe.multi program.
        if let Some(r) = table[ids[0]].return_attached(graph) {
            progs.push((r, true));
        }
        let names: Vec<&str> = ids.iter().map(|&i| table[i].name.as_ref()).collect();
        let cookies: Vec<u64> = ids
            .iter()
            .map(|&i| kprobe_multi_cookie(i, &table[i]))
            .collect();
        let addrs = kernel::function_addrs(ids.iter().map(|&i| function(&table[i])));
        let mut links = Vec::new();
        for (id, retprobe) in progs {
            let Some(p) = Self::prog(obj, id) else {
                return Err(libbpf_rs::Error::from_raw_os_error(libc::ENOENT));
            };
            let fd = p.as_fd().as_raw_fd();
            // The addresses are this boot's (a snapshot's key holds the
            // modules' addresses too); should the kernel refuse them, names.
            let by_addr = addrs.as_ref().and_then(|a| {
                raw::kprobe_multi_link(fd, MultiTargets::Addrs(a), &cookies, retprobe).ok()
            });
            let link = match by_addr {
                Some(l) => {
                    self.multi_by_address += 1;
                    l
                }
                None => {
                    let l =
                        raw::kprobe_multi_link(fd, MultiTargets::Names(&names), &cookies, retprobe)
                            .map_err(libbpf_rs::Error::from_raw_os_error)?;
                    learn_addrs(l.as_fd(), table);
                    l
                }
            };
            links.push(link);
        }
        self.multi_links.extend(links);
        Ok(())
    }

    /// Attach every kprobe-multi group, one link per program.
    pub(super) fn attach_multi_groups(
        &mut self,
        groups: std::collections::BTreeMap<ProgramId, Vec<usize>>,
        table: &[ProbeEntry],
        graph: bool,
        done: &mut usize,
        progress: Progress<'_>,
    ) -> Result<(), LoadError> {
        let resolver = resolve_unknown_addrs(groups.values(), table);
        for (prog, ids) in groups {
            match self.attach_multi(0, prog, table, &ids, graph) {
                Ok(()) => self.attached.extend(&ids),
                Err(e) if backend_unusable(&e) && self.attached.is_empty() => {
                    return Err(LoadError::Unavailable {
                        backend: Backend::KprobeMulti,
                        reason: format!("{e:#}"),
                    })
                }
                Err(e) => {
                    let why = reason(&e);
                    self.failed.extend(ids.iter().map(|&i| (i, why.clone())));
                }
            }
            *done += ids.len();
            if !progress(*done) {
                return Err(LoadError::Interrupted);
            }
        }
        if let Some(link) = resolver {
            kernel::features::release_later(link);
        }
        Ok(())
    }
}

/// Where two or more kprobe-multi links would go by name (a start whose
/// functions' addresses are not all known yet), have the kernel resolve
/// every unknown name at once, so that each link goes by address. Returns
/// the link that resolved them, to release once the others are in.
fn resolve_unknown_addrs<'a>(
    groups: impl Iterator<Item = &'a Vec<usize>>,
    table: &[ProbeEntry],
) -> Option<OwnedFd> {
    let mut by_name = 0;
    let mut unknown = Vec::new();
    for ids in groups {
        let missing: Vec<usize> = ids
            .iter()
            .copied()
            .filter(|&i| kernel::function_addrs([function(&table[i])]).is_none())
            .collect();
        by_name += usize::from(!missing.is_empty());
        unknown.extend(missing);
    }
    if by_name < 2 {
        return None;
    }
    let names: Vec<&str> = unknown.iter().map(|&i| table[i].name.as_ref()).collect();
    let cookies: Vec<u64> = unknown
        .iter()
        .map(|&i| kprobe_multi_cookie(i, &table[i]))
        .collect();
    let link = kernel::features::idle_kprobe_multi(&names, &cookies).ok()?;
    learn_addrs(link.as_fd(), table);
    Some(link)
}

/// Keep the addresses the kernel resolved a kprobe-multi link's functions
/// to (each found by its cookie's row index).
fn learn_addrs(link: BorrowedFd<'_>, table: &[ProbeEntry]) {
    let Some(found) = raw::kprobe_multi_addrs(link) else {
        return;
    };
    kernel::learn_function_addrs(found.into_iter().filter_map(|(cookie, addr)| {
        let (module, name) = function(table.get(kprobe_multi_cookie_row(cookie))?);
        Some((module, name, addr))
    }));
}

/// A row's function as addresses are kept: (module, name).
fn function(e: &ProbeEntry) -> (Option<&str>, &str) {
    (e.module.as_deref(), e.name.as_ref())
}
