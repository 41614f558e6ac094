//! Command syntax `imap-codec` does not read yet, read here before it:
//! SEARCH's result options (ESEARCH, RFC 4731, and SAVE, RFC 5182), the
//! saved result `$` where a message set may stand, and LIST's selection and
//! return options with several patterns (LIST-EXTENDED, RFC 5258, and
//! LIST-STATUS, RFC 5819). Only the ASCII head of a command is looked at;
//! a command with a literal where these options sit is left to the codec.

use imap_types::status::StatusDataItemName;

/// What `SEARCH RETURN (...)` asked for; an empty list means ALL.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SearchReturn {
    pub min: bool,
    pub max: bool,
    pub count: bool,
    pub all: bool,
    /// Keep the result as `$` (SEARCHRES, RFC 5182).
    pub save: bool,
}

impl SearchReturn {
    /// Whether an ESEARCH response is due: SAVE alone asks for none
    /// (RFC 5182 §2.4).
    pub fn answers(&self) -> bool {
        self.min || self.max || self.count || self.all
    }

    /// Whether `$` keeps only the minimum and maximum found, not all
    /// (RFC 5182 §2.4: SAVE with MIN or MAX, without ALL or COUNT).
    pub fn saves_extremes(&self) -> bool {
        (self.min || self.max) && !(self.all || self.count)
    }
}

/// A SEARCH with result options: the options, and the command without them
/// for the codec.
pub fn search_return(command: &[u8]) -> Option<Result<(SearchReturn, Vec<u8>), String>> {
    let head = String::from_utf8_lossy(&command[..command.len().min(512)]).into_owned();
    let upper = head.to_ascii_uppercase();
    let mut words = upper.splitn(4, ' ');
    let _tag = words.next()?;
    let mut name = words.next()?;
    let mut skip = 0;
    if name == "UID" {
        skip = 1;
        name = words.next()?;
    }
    if name != "SEARCH" {
        return None;
    }
    // Where the criteria begin: after tag, [UID], SEARCH.
    let start = nth_space(&upper, 2 + skip)? + 1;
    let rest = &upper[start..];
    if !rest.starts_with("RETURN (") {
        return None;
    }
    let open = start + "RETURN ".len();
    let close = match upper[open..].find(')') {
        Some(i) => open + i,
        None => return Some(Err("RETURN options end with `)`".into())),
    };
    let mut options = SearchReturn::default();
    for option in upper[open + 1..close].split_whitespace() {
        match option {
            "MIN" => options.min = true,
            "MAX" => options.max = true,
            "COUNT" => options.count = true,
            "ALL" => options.all = true,
            "SAVE" => options.save = true,
            other => {
                return Some(Err(format!(
                    "SEARCH RETURN option {other} is not offered: MIN, MAX, COUNT, ALL and SAVE are"
                )));
            }
        }
    }
    if options == SearchReturn::default() {
        options.all = true;
    }
    let mut cut = command[..start].to_vec();
    let after = close + 1;
    cut.extend_from_slice(
        command[after..]
            .strip_prefix(b" ")
            .unwrap_or(&command[after..]),
    );
    Some(Ok((options, cut)))
}

/// Where a command names the saved search result `$` (RFC 5182): the
/// byte offset of each `$`, and whether it stands for UIDs there (in a
/// UID command's message set, or after SEARCH's `UID` key) or for
/// sequence numbers. `None` when the command names none. Quoted strings
/// and literals are skipped, so a `$` inside them is left alone.
pub fn saved_result_references(command: &[u8]) -> Option<Vec<(usize, bool)>> {
    let head = String::from_utf8_lossy(&command[..command.len().min(64)]).to_ascii_uppercase();
    let mut words = head.split(' ');
    let _tag = words.next()?;
    let mut name = words.next()?;
    let uid_command = name == "UID";
    if uid_command {
        name = words.next()?;
    }
    let name = name.trim_end_matches(['\r', '\n']);
    if !matches!(
        name,
        "FETCH" | "STORE" | "COPY" | "MOVE" | "SEARCH" | "EXPUNGE"
    ) {
        return None;
    }
    let search = name == "SEARCH";
    let delimiter = |b: Option<&u8>| matches!(b, None | Some(b' ' | b'(' | b')' | b'\r' | b'\n'));
    let mut found = Vec::new();
    let mut previous_word: &[u8] = b"";
    let mut i = 0;
    while i < command.len() {
        match command[i] {
            b'"' => {
                i += 1;
                while i < command.len() && command[i] != b'"' {
                    i += if command[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                previous_word = b"";
            }
            b'{' => {
                // {n}, {n+} or ~{n}, then CRLF and n bytes.
                let close = command[i..].iter().position(|&b| b == b'}').map(|p| i + p);
                let length = close.and_then(|close| {
                    std::str::from_utf8(&command[i + 1..close])
                        .ok()?
                        .trim_end_matches(['+', '-'])
                        .parse::<usize>()
                        .ok()
                });
                match (close, length) {
                    (Some(close), Some(length)) => i = close + 3 + length,
                    _ => i += 1,
                }
                previous_word = b"";
            }
            b'$' if delimiter(i.checked_sub(1).map(|p| &command[p]))
                && delimiter(command.get(i + 1)) =>
            {
                let uids = if search {
                    previous_word.eq_ignore_ascii_case(b"UID")
                } else {
                    uid_command
                };
                found.push((i, uids));
                i += 1;
                previous_word = b"$";
            }
            b' ' | b'(' | b')' | b'\r' | b'\n' => i += 1,
            _ => {
                let start = i;
                while i < command.len() && !delimiter(command.get(i)) && command[i] != b'"' {
                    i += 1;
                }
                previous_word = &command[start..i];
            }
        }
    }
    (!found.is_empty()).then_some(found)
}

fn nth_space(text: &str, n: usize) -> Option<usize> {
    text.match_indices(' ').nth(n - 1).map(|(i, _)| i)
}

/// LIST with LIST-EXTENDED syntax.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListExtended {
    pub tag: String,
    /// Selection: only subscribed names.
    pub subscribed: bool,
    /// Selection: also the parents of matches that the selection keeps.
    pub recursive_match: bool,
    pub reference: String,
    pub patterns: Vec<String>,
    /// Return: say `\Subscribed`.
    pub return_subscribed: bool,
    /// Return: a STATUS response after each selectable mailbox.
    pub status: Vec<StatusDataItemName>,
}

/// A LIST command that uses the extended syntax (selection options,
/// several patterns or return options); `None` for a plain LIST, which the
/// codec reads.
pub fn list_extended(command: &[u8]) -> Option<Result<ListExtended, String>> {
    let text = std::str::from_utf8(command).ok()?;
    let text = text.trim_end_matches(['\r', '\n']);
    let mut tokens = tokenize(text)?;
    if tokens.len() < 4 {
        return None;
    }
    let tag = match tokens.remove(0) {
        Token::Word(tag) => tag,
        _ => return None,
    };
    if !matches!(tokens.remove(0), Token::Word(w) if w.eq_ignore_ascii_case("LIST")) {
        return None;
    }
    let extended = matches!(tokens.first(), Some(Token::List(_)))
        || matches!(tokens.get(1), Some(Token::List(_)))
        || tokens.len() > 2;
    if !extended {
        return None;
    }
    let mut list = ListExtended {
        tag,
        ..ListExtended::default()
    };
    if let Some(Token::List(options)) = tokens.first() {
        for option in options {
            match option {
                Token::Word(w) if w.eq_ignore_ascii_case("SUBSCRIBED") => list.subscribed = true,
                Token::Word(w) if w.eq_ignore_ascii_case("RECURSIVEMATCH") => {
                    list.recursive_match = true
                }
                // One server holds every mailbox: nothing is remote.
                Token::Word(w) if w.eq_ignore_ascii_case("REMOTE") => {}
                other => {
                    return Some(Err(format!(
                        "LIST selection option {other:?} is not offered: SUBSCRIBED, REMOTE and RECURSIVEMATCH are"
                    )));
                }
            }
        }
        if list.recursive_match && !list.subscribed {
            return Some(Err(
                "RECURSIVEMATCH goes with another selection option (RFC 5258 §3.1)".into(),
            ));
        }
        tokens.remove(0);
    }
    let reference = match tokens.first() {
        Some(Token::Word(w)) | Some(Token::Quoted(w)) => w.clone(),
        _ => return Some(Err("LIST needs a reference name".into())),
    };
    tokens.remove(0);
    list.reference = reference;
    match tokens.first() {
        Some(Token::Word(w)) | Some(Token::Quoted(w)) => list.patterns.push(w.clone()),
        Some(Token::List(patterns)) => {
            for pattern in patterns {
                match pattern {
                    Token::Word(w) | Token::Quoted(w) => list.patterns.push(w.clone()),
                    Token::List(_) => return Some(Err("a pattern is a string".into())),
                }
            }
        }
        None => return Some(Err("LIST needs a mailbox pattern".into())),
    }
    tokens.remove(0);
    match tokens.as_slice() {
        [] => {}
        [Token::Word(w), Token::List(options)] if w.eq_ignore_ascii_case("RETURN") => {
            let mut i = 0;
            while i < options.len() {
                match &options[i] {
                    Token::Word(w) if w.eq_ignore_ascii_case("SUBSCRIBED") => {
                        list.return_subscribed = true
                    }
                    // Children are always told (CHILDREN).
                    Token::Word(w) if w.eq_ignore_ascii_case("CHILDREN") => {}
                    // Special uses are always told (SPECIAL-USE).
                    Token::Word(w) if w.eq_ignore_ascii_case("SPECIAL-USE") => {}
                    Token::Word(w) if w.eq_ignore_ascii_case("STATUS") => {
                        let Some(Token::List(items)) = options.get(i + 1) else {
                            return Some(Err("RETURN STATUS takes a list of items".into()));
                        };
                        for item in items {
                            let Token::Word(item) = item else {
                                return Some(Err("a STATUS item is an atom".into()));
                            };
                            match status_item(item) {
                                Some(item) => list.status.push(item),
                                None => {
                                    return Some(Err(format!(
                                        "{item} is not a STATUS item this server answers"
                                    )));
                                }
                            }
                        }
                        i += 1;
                    }
                    other => {
                        return Some(Err(format!(
                            "LIST return option {other:?} is not offered: SUBSCRIBED, CHILDREN, SPECIAL-USE and STATUS are"
                        )));
                    }
                }
                i += 1;
            }
        }
        _ => return Some(Err("after the patterns only RETURN (...) may come".into())),
    }
    Some(Ok(list))
}

fn status_item(name: &str) -> Option<StatusDataItemName> {
    Some(match name.to_ascii_uppercase().as_str() {
        "MESSAGES" => StatusDataItemName::Messages,
        "RECENT" => StatusDataItemName::Recent,
        "UIDNEXT" => StatusDataItemName::UidNext,
        "UIDVALIDITY" => StatusDataItemName::UidValidity,
        "UNSEEN" => StatusDataItemName::Unseen,
        "DELETED" => StatusDataItemName::Deleted,
        "SIZE" => StatusDataItemName::Size,
        "HIGHESTMODSEQ" => StatusDataItemName::HighestModSeq,
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    List(Vec<Token>),
}

/// Atoms, quoted strings and parenthesised lists; `None` for anything
/// else (a literal), which leaves the command to the codec.
fn tokenize(text: &str) -> Option<Vec<Token>> {
    fn list(
        chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
        depth: usize,
    ) -> Option<Vec<Token>> {
        let mut out = Vec::new();
        loop {
            match chars.peek().copied() {
                None => return (depth == 0).then_some(out),
                Some(' ') => {
                    chars.next();
                }
                Some(')') => {
                    chars.next();
                    return (depth > 0).then_some(out);
                }
                Some('(') => {
                    chars.next();
                    if depth > 2 {
                        return None;
                    }
                    out.push(Token::List(list(chars, depth + 1)?));
                }
                Some('"') => {
                    chars.next();
                    let mut s = String::new();
                    loop {
                        match chars.next()? {
                            '\\' => s.push(chars.next()?),
                            '"' => break,
                            c => s.push(c),
                        }
                    }
                    out.push(Token::Quoted(s));
                }
                Some('{') => return None,
                Some(_) => {
                    let mut s = String::new();
                    while let Some(&c) = chars.peek() {
                        if c == ' ' || c == '(' || c == ')' || c == '"' {
                            break;
                        }
                        s.push(c);
                        chars.next();
                    }
                    out.push(Token::Word(s));
                }
            }
        }
    }
    list(&mut text.chars().peekable(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_return_options_are_cut_out_for_the_codec() {
        let (options, rest) = search_return(b"a1 UID SEARCH RETURN (MIN COUNT) SEEN\r\n")
            .unwrap()
            .unwrap();
        assert!(options.min && options.count && !options.max && !options.all);
        assert_eq!(rest, b"a1 UID SEARCH SEEN\r\n");
        let (options, rest) = search_return(b"a2 search return () all\r\n")
            .unwrap()
            .unwrap();
        assert!(options.all);
        assert_eq!(rest, b"a2 search all\r\n");
        assert!(search_return(b"a3 SEARCH ALL\r\n").is_none());
        let (options, _) = search_return(b"a4 SEARCH RETURN (SAVE) ALL\r\n")
            .unwrap()
            .unwrap();
        assert!(options.save && !options.answers());
        let (options, _) = search_return(b"a5 SEARCH RETURN (SAVE MIN) ALL\r\n")
            .unwrap()
            .unwrap();
        assert!(options.save && options.answers() && options.saves_extremes());
        assert!(
            search_return(b"a6 SEARCH RETURN (PARTIAL 1:5) ALL\r\n")
                .unwrap()
                .is_err()
        );
    }

    #[test]
    fn the_saved_result_is_found_where_a_message_set_stands() {
        assert_eq!(
            saved_result_references(b"a FETCH $ FLAGS\r\n"),
            Some(vec![(8, false)])
        );
        assert_eq!(
            saved_result_references(b"a UID FETCH $ FLAGS\r\n"),
            Some(vec![(12, true)])
        );
        // In SEARCH, `$` is a message set key; after UID it is a UID set.
        assert_eq!(
            saved_result_references(b"a UID SEARCH OR $ UID $\r\n"),
            Some(vec![(16, false), (22, true)])
        );
        // Keywords, quoted strings and literals keep their `$`.
        assert_eq!(
            saved_result_references(b"a STORE 1 +FLAGS ($Forwarded)\r\n"),
            None
        );
        assert_eq!(saved_result_references(b"a SEARCH SUBJECT \"$\"\r\n"), None);
        assert_eq!(
            saved_result_references(b"a SEARCH SUBJECT {1}\r\n$ $\r\n"),
            Some(vec![(24, false)])
        );
        assert_eq!(saved_result_references(b"a LIST \"\" $\r\n"), None);
        assert_eq!(
            saved_result_references(b"a COPY $ Trash\r\n"),
            Some(vec![(7, false)])
        );
    }

    #[test]
    fn list_extended_reads_selection_patterns_and_returns() {
        assert!(list_extended(b"a LIST \"\" \"*\"\r\n").is_none());
        let list = list_extended(
            b"a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"INBOX\" \"Sent/%\") RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(list.subscribed && list.recursive_match);
        assert_eq!(list.patterns, ["INBOX", "Sent/%"]);
        assert_eq!(
            list.status,
            [StatusDataItemName::Messages, StatusDataItemName::Unseen]
        );
        let list = list_extended(b"b LIST \"\" % RETURN (SUBSCRIBED)\r\n")
            .unwrap()
            .unwrap();
        assert!(list.return_subscribed && !list.subscribed);
        assert_eq!(list.patterns, ["%"]);
        assert!(
            list_extended(b"c LIST (RECURSIVEMATCH) \"\" %\r\n")
                .unwrap()
                .is_err()
        );
        assert!(
            list_extended(b"d LIST \"\" % RETURN (FOO)\r\n")
                .unwrap()
                .is_err()
        );
    }
}
