//! Enrollment by invitation: in-band registration (XEP-0077) allowed only
//! to a client that first presents an invitation token (XEP-0401's
//! `<preauth xmlns='urn:xmpp:pars:0' token='…'/>`, as Prosody's
//! mod_invites does), before authentication, on an encrypted stream.
//!
//! ```text
//! C: <iq type='set'><preauth xmlns='urn:xmpp:pars:0' token='T'/></iq>   → result, or item-not-found + why
//! C: <iq type='get'><query xmlns='jabber:iq:register'/></iq>           → the form (username filled in)
//! C: <iq type='set'><query xmlns='jabber:iq:register'>
//!        <username>dave</username><password>…</password></query></iq>  → result: dave exists
//! ```
//!
//! Owns answering those stanzas. Pure: what a token is worth and how a
//! user is created is the [`Enroll`] the server was given (the group
//! server's invitations); it must not touch sockets or files.

use zeroize::Zeroizing;

use crate::xmpp::element::Element;
use crate::xmpp::hub::NS_STANZAS;
use crate::xmpp::stream::NS_CLIENT;

/// In-band registration.
pub const NS_REGISTER: &str = "jabber:iq:register";
/// The stream feature that offers it.
pub const NS_REGISTER_FEATURE: &str = "http://jabber.org/features/iq-register";
/// Pre-authenticated registration tokens (XEP-0379, used by XEP-0401).
pub const NS_PREAUTH: &str = "urn:xmpp:pars:0";

/// The longest token, user name or password taken from a client.
const MAX_FIELD: usize = 1024;

/// What a token is worth and how its user comes to exist.
pub trait Enroll: Send + Sync + std::fmt::Debug {
    /// The user name an open token is for, or a one-line reason.
    fn check(&self, token: &str) -> Result<String, String>;
    /// Spends `token` and creates `user` with `password` (durable when it
    /// returns), or a one-line reason.
    fn redeem(&self, token: &str, user: &str, password: &str) -> Result<(), String>;
}

/// One connection's progress through enrollment.
#[derive(Default)]
pub struct Registration {
    /// The accepted token and the user it is for.
    accepted: Option<(Zeroizing<String>, String)>,
    /// Tokens refused on this connection.
    pub refused: u32,
    /// The user created, once done.
    pub created: Option<String>,
}

/// Whether `e` is a stanza this module answers.
pub fn is_registration(e: &Element) -> bool {
    e.is("iq", NS_CLIENT)
        && (e.get_child("preauth", NS_PREAUTH).is_some() || e.get_child("query", NS_REGISTER).is_some())
}

fn error(id: &str, kind: &str, condition: &str, text: &str) -> Element {
    let mut err = Element::new("error", NS_CLIENT).attr("type", kind).child(Element::new(condition, NS_STANZAS));
    if !text.is_empty() {
        err = err.child(Element::new("text", NS_STANZAS).text(text));
    }
    Element::new("iq", NS_CLIENT).attr("type", "error").attr("id", id).child(err)
}

fn result(id: &str) -> Element {
    Element::new("iq", NS_CLIENT).attr("type", "result").attr("id", id)
}

/// The answer to a registration stanza `e` (see [`is_registration`]).
pub fn answer(e: &Element, reg: &mut Registration, enroll: &dyn Enroll) -> Element {
    let id = e.get_attr("id").unwrap_or("").chars().take(128).collect::<String>();
    let kind = e.get_attr("type").unwrap_or("");
    if let Some(pre) = e.get_child("preauth", NS_PREAUTH) {
        let token = pre.get_attr("token").unwrap_or("");
        if kind != "set" || token.is_empty() || token.len() > MAX_FIELD {
            return error(&id, "modify", "bad-request", "a preauth token is set, not got");
        }
        return match enroll.check(token) {
            Ok(user) => {
                reg.accepted = Some((Zeroizing::new(token.to_string()), user));
                result(&id)
            }
            Err(why) => {
                reg.refused += 1;
                error(&id, "cancel", "item-not-found", &why)
            }
        };
    }
    let Some((token, user)) = reg.accepted.as_ref() else {
        return error(&id, "cancel", "not-allowed", "registration is by invitation: present its token first");
    };
    if reg.created.is_some() {
        return error(&id, "cancel", "not-allowed", "this stream has registered already");
    }
    match kind {
        "get" => Element::new("iq", NS_CLIENT).attr("type", "result").attr("id", &id).child(
            Element::new("query", NS_REGISTER)
                .child(Element::new("instructions", NS_REGISTER).text("Choose a password for your invited account."))
                .child(Element::new("username", NS_REGISTER).text(user.as_str()))
                .child(Element::new("password", NS_REGISTER)),
        ),
        "set" => {
            let Some(q) = e.get_child("query", NS_REGISTER) else {
                return error(&id, "modify", "bad-request", "");
            };
            if q.get_child("remove", NS_REGISTER).is_some() {
                return error(&id, "cancel", "not-allowed", "accounts are removed by the server's administrator");
            }
            let name = q.get_child("username", NS_REGISTER).map(|u| u.text_content()).unwrap_or_default();
            let password =
                Zeroizing::new(q.get_child("password", NS_REGISTER).map(|p| p.text_content()).unwrap_or_default());
            if name.is_empty() || password.is_empty() || name.len() > MAX_FIELD || password.len() > MAX_FIELD {
                return error(&id, "modify", "not-acceptable", "a user name and a password are needed");
            }
            if !name.eq_ignore_ascii_case(user) {
                return error(&id, "modify", "not-acceptable", &format!("this invitation is for the user {user}"));
            }
            match enroll.redeem(token, user, &password) {
                Ok(()) => {
                    reg.created = Some(user.clone());
                    result(&id)
                }
                Err(why) => error(&id, "cancel", "conflict", &why),
            }
        }
        _ => error(&id, "modify", "bad-request", ""),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Debug, Default)]
    struct Book {
        spent: Mutex<Vec<(String, String)>>,
    }

    impl Enroll for Book {
        fn check(&self, token: &str) -> Result<String, String> {
            match token {
                "good" if self.spent.lock().unwrap().is_empty() => Ok("dave".into()),
                "good" => Err("this invitation was already used".into()),
                _ => Err("unknown".into()),
            }
        }
        fn redeem(&self, token: &str, user: &str, password: &str) -> Result<(), String> {
            self.check(token)?;
            self.spent.lock().unwrap().push((user.into(), password.into()));
            Ok(())
        }
    }

    fn iq(kind: &str, child: Element) -> Element {
        Element::new("iq", NS_CLIENT).attr("type", kind).attr("id", "r1").child(child)
    }

    fn preauth(token: &str) -> Element {
        iq("set", Element::new("preauth", NS_PREAUTH).attr("token", token))
    }

    fn register(user: &str, pw: &str) -> Element {
        iq(
            "set",
            Element::new("query", NS_REGISTER)
                .child(Element::new("username", NS_REGISTER).text(user))
                .child(Element::new("password", NS_REGISTER).text(pw)),
        )
    }

    fn condition(e: &Element) -> Option<String> {
        e.get_child("error", NS_CLIENT).and_then(|x| x.elements().find(|c| c.name != "text")).map(|c| c.name.clone())
    }

    #[test]
    fn registration_needs_a_good_token_first_and_happens_once() {
        let book = Book::default();
        let mut reg = Registration::default();
        // No token: refused, nothing made.
        assert_eq!(condition(&answer(&register("dave", "pw"), &mut reg, &book)).as_deref(), Some("not-allowed"));
        assert_eq!(condition(&answer(&preauth("bad"), &mut reg, &book)).as_deref(), Some("item-not-found"));
        assert_eq!(reg.refused, 1);
        assert_eq!(answer(&preauth("good"), &mut reg, &book).get_attr("type"), Some("result"));
        // The form names the invited user.
        let form = answer(&iq("get", Element::new("query", NS_REGISTER)), &mut reg, &book);
        let q = form.get_child("query", NS_REGISTER).unwrap();
        assert_eq!(q.get_child("username", NS_REGISTER).unwrap().text_content(), "dave");
        // Another name, or no password: refused.
        assert_eq!(condition(&answer(&register("eve", "pw"), &mut reg, &book)).as_deref(), Some("not-acceptable"));
        assert_eq!(condition(&answer(&register("dave", ""), &mut reg, &book)).as_deref(), Some("not-acceptable"));
        assert!(book.spent.lock().unwrap().is_empty());
        assert_eq!(answer(&register("dave", "s3cret"), &mut reg, &book).get_attr("type"), Some("result"));
        assert_eq!(*book.spent.lock().unwrap(), vec![("dave".to_string(), "s3cret".to_string())]);
        assert_eq!(reg.created.as_deref(), Some("dave"));
        // Not twice on one stream, and the token is spent for the next.
        assert_eq!(condition(&answer(&register("dave", "x"), &mut reg, &book)).as_deref(), Some("not-allowed"));
        let mut next = Registration::default();
        let again = answer(&preauth("good"), &mut next, &book);
        assert_eq!(condition(&again).as_deref(), Some("item-not-found"));
        assert!(
            again
                .get_child("error", NS_CLIENT)
                .unwrap()
                .get_child("text", NS_STANZAS)
                .unwrap()
                .text_content()
                .contains("already used")
        );
    }
}
