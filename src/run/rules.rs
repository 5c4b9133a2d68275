//! The rules of a run: the book, and the extraction matcher compiling from it meanwhile.
//!
//! Compiling the matcher (the rule set's one NFA and lazy DFA, each rule's prefilter) is the
//! largest piece of work in a session's set-up: ~5 ms warm, ~10 ms in a fresh process. It used
//! to start in the extraction thread once the agent had been spawned, so a short command
//! (`wrapper ci --db x.db -- make -q`) ended and then waited for it: of a 25 ms session, 11 ms
//! were that wait. It starts now as soon as the rules are loaded, on a thread of its own at
//! the recording threads' lower priority, so that it takes the cores only where the masking
//! rules, the database's set-up and the spawn leave them free.

use std::thread;

use crate::extract::rules::RuleBook;
use crate::extract::Matcher;

/// The rule book, and the matcher for one agent, compiling or compiled.
pub(super) struct Rules {
    pub(super) book: RuleBook,
    matcher: Option<thread::JoinHandle<Matcher>>,
}

impl Rules {
    /// Starts compiling the matcher for `agent` when `wanted` (anything will be recorded);
    /// else, or should no thread start, it is compiled when it is asked for.
    pub(super) fn start(book: RuleBook, agent: &str, wanted: bool) -> Rules {
        let matcher = wanted
            .then(|| {
                let (book, agent) = (book.clone(), agent.to_string());
                thread::Builder::new()
                    .name("wrapper-rules".into())
                    .spawn(move || {
                        super::nice::background(super::nice::Recorder::Reader);
                        compile(&book, &agent)
                    })
                    .ok()
            })
            .flatten();
        Rules { book, matcher }
    }

    /// The matcher for `agent`: the one compiled meanwhile, or compiled now.
    pub(super) fn matcher(&mut self, agent: &str) -> Matcher {
        match self.matcher.take().map(thread::JoinHandle::join) {
            Some(Ok(m)) => m,
            Some(Err(_)) => {
                eprintln!("wrapper: warning: compiling the rules failed; nothing is extracted");
                Matcher::empty()
            }
            None => compile(&self.book, agent),
        }
    }
}

/// Rules loaded from files were verified before the spawn; should the rule set as a whole
/// still not compile (a size limit), output keeps flowing and wrapper says that nothing will
/// be extracted.
fn compile(book: &RuleBook, agent: &str) -> Matcher {
    match Matcher::new(book, Some(agent)) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("wrapper: warning: {e}; output passes through but nothing is extracted");
            Matcher::empty()
        }
    }
}
