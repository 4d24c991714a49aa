//! A block struct's numbers named after the block's names: where the
//! instances merged into one struct differ in a number, and that number is
//! what one of the block's names (a parameter, a size of its input, a named
//! value) stands for in every instance, the struct has a field of that name
//! (`self.stride`), and an `if` over those names is written as the
//! condition itself (`if self.stride != 1 || self.C != self.out`), not a
//! flag. Numbers no name stands for stay in the `cfg`/`cff` arrays, and
//! conditions that cannot be written in Rust's types stay flags.

use std::collections::{HashMap, HashSet};

use proc_macro2::{Ident, Literal, TokenStream};
use quote::quote;

use crate::ast::{ArithOp, Body, CmpOp, Cond, Head, Value};
use crate::lower::Num;

/// The Rust type of a named field.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NumTy {
    Usize,
    I64,
    F64,
    Bool,
}

/// A field named after one of the block's names: its values per member of
/// the struct, encoded as `data` carries them.
pub struct Named {
    pub ident: Ident,
    pub ty: NumTy,
    pub values: Vec<u64>,
}

impl NumTy {
    /// The type every one of `nums` fits (`usize` for integers none of
    /// which is negative); `None` where they differ in kind.
    pub fn of(nums: &[Num]) -> Option<NumTy> {
        let all = |f: fn(&Num) -> bool| nums.iter().all(f);
        if all(|n| matches!(n, Num::Int(v) if *v >= 0)) {
            Some(NumTy::Usize)
        } else if all(|n| matches!(n, Num::Int(_))) {
            Some(NumTy::I64)
        } else if all(|n| matches!(n, Num::Float(_))) {
            Some(NumTy::F64)
        } else if all(|n| matches!(n, Num::Bool(_))) {
            Some(NumTy::Bool)
        } else {
            None
        }
    }

    pub fn tokens(self) -> TokenStream {
        match self {
            NumTy::Usize => quote!(usize),
            NumTy::I64 => quote!(i64),
            NumTy::F64 => quote!(f64),
            NumTy::Bool => quote!(bool),
        }
    }

    /// A value `id` of this type as `data` carries it ([`Num::bits`]).
    pub fn encode(self, id: &Ident) -> TokenStream {
        match self {
            NumTy::Usize | NumTy::I64 => quote!(#id as u64),
            NumTy::F64 => quote!(#id.to_bits()),
            NumTy::Bool => quote!(u64::from(#id)),
        }
    }
}

impl Named {
    pub fn ty_tokens(&self) -> TokenStream {
        self.ty.tokens()
    }

    /// Reads the field from the next number of `data`.
    pub fn decode(&self) -> TokenStream {
        let raw = quote!(data.next().copied().unwrap_or(0));
        match self.ty {
            NumTy::Usize => quote!(#raw as usize),
            NumTy::I64 => quote!(#raw as i64),
            NumTy::F64 => quote!(f64::from_bits(#raw)),
            NumTy::Bool => quote!(#raw != 0),
        }
    }
}

/// The names of one struct's members and the fields made from them.
pub struct Names<'a> {
    /// Per member: the numbers its names stand for, in the block's order.
    env: Vec<&'a [(String, Num)]>,
    /// The block's `if` conditions, by id.
    conds: HashMap<usize, &'a Cond>,
    /// Idents that are fields already (layers, `fusion`, ..).
    reserved: HashSet<String>,
    pub fields: Vec<Named>,
}

impl<'a> Names<'a> {
    pub fn new(
        env: Vec<&'a [(String, Num)]>,
        body: Option<&'a Body>,
        reserved: HashSet<String>,
    ) -> Self {
        let mut conds = HashMap::new();
        for e in body.iter().flat_map(|b| b.exprs()) {
            crate::ast::visit_exprs(e, &mut |x| {
                if let Head::If { id, cond, .. } = &x.head {
                    conds.insert(*id, cond);
                }
            });
        }
        Names {
            env,
            conds,
            reserved,
            fields: Vec::new(),
        }
    }

    /// The field for `name`, made on first use; `None` where the name is
    /// not a usable field name or differs in kind between members.
    fn field(&mut self, name: &str) -> Option<usize> {
        if let Some(k) = self.fields.iter().position(|f| f.ident == name) {
            return Some(k);
        }
        if self.reserved.contains(name) {
            return None;
        }
        let ident: Ident = syn::parse_str(name).ok()?;
        let nums: Vec<Num> = self
            .env
            .iter()
            .map(|e| e.iter().find(|(n, _)| n == name).map(|(_, v)| *v))
            .collect::<Option<_>>()?;
        nums.first()?;
        let ty = NumTy::of(&nums)?;
        let values = nums.iter().map(|n| n.bits()).collect();
        self.fields.push(Named { ident, ty, values });
        Some(self.fields.len() - 1)
    }

    /// The first of the block's names whose number is `want[i]` in member
    /// `members[i]`, for each `i`.
    fn matching(&self, members: &[usize], want: &[Num]) -> Option<String> {
        let first = self.env.get(*members.first()?)?;
        first
            .iter()
            .map(|(n, _)| n)
            .find(|n| {
                members.iter().zip(want).all(|(&m, w)| {
                    self.env
                        .get(m)
                        .and_then(|e| e.iter().find(|(k, _)| k == *n))
                        .is_some_and(|(_, v)| same(v, w))
                })
            })
            .cloned()
    }

    /// `self.name` for the integers `values` (per member), where a name
    /// stands for them; `usize` says the code wants a `usize` there.
    pub fn int(&mut self, members: &[usize], values: &[u64], usize: bool) -> Option<TokenStream> {
        let want: Vec<Num> = values.iter().map(|v| Num::Int(*v as i64)).collect();
        let name = self.matching(members, &want)?;
        let k = self.field(&name)?;
        let f = &self.fields[k];
        let ident = &f.ident;
        Some(match (f.ty, usize) {
            (NumTy::Usize, true) => quote!(self.#ident),
            (NumTy::I64, true) => quote!((self.#ident as usize)),
            _ => quote!((self.#ident as _)),
        })
    }

    /// `self.name` for the floats `values` (per member).
    pub fn float(&mut self, members: &[usize], values: &[f64]) -> Option<TokenStream> {
        let want: Vec<Num> = values.iter().map(|v| Num::Float(*v)).collect();
        let name = self.matching(members, &want)?;
        let k = self.field(&name)?;
        let ident = &self.fields[k].ident;
        Some(quote!((self.#ident as _)))
    }

    /// The condition of `if` `id` over the struct's fields, where every
    /// name in it is a `usize` or `bool` field.
    pub fn condition(&mut self, id: usize) -> Option<TokenStream> {
        let cond = *self.conds.get(&id)?;
        self.cond(cond)
    }

    fn cond(&mut self, c: &Cond) -> Option<TokenStream> {
        Some(match c {
            Cond::Cmp(op, a, b) => {
                let (a, b) = (self.value(a)?, self.value(b)?);
                let op = match op {
                    CmpOp::Eq => quote!(==),
                    CmpOp::Ne => quote!(!=),
                    CmpOp::Lt => quote!(<),
                    CmpOp::Le => quote!(<=),
                    CmpOp::Gt => quote!(>),
                    CmpOp::Ge => quote!(>=),
                };
                quote!(#a #op #b)
            }
            Cond::And(a, b) => {
                let wrap = |c: &Cond, t: TokenStream| match c {
                    Cond::Or(..) => quote!((#t)),
                    _ => t,
                };
                let (ta, tb) = (self.cond(a)?, self.cond(b)?);
                let (ta, tb) = (wrap(a, ta), wrap(b, tb));
                quote!(#ta && #tb)
            }
            Cond::Or(a, b) => {
                let (a, b) = (self.cond(a)?, self.cond(b)?);
                quote!(#a || #b)
            }
            Cond::Not(x) => {
                let x = self.cond(x)?;
                quote!(!(#x))
            }
            Cond::Bool(b, _) => quote!(#b),
        })
    }

    fn value(&mut self, v: &Value) -> Option<TokenStream> {
        Some(match v {
            Value::Int(n, _) => {
                let n = u64::try_from(*n).ok()?;
                let lit = Literal::u64_unsuffixed(n);
                quote!(#lit)
            }
            Value::Bool(b, _) => quote!(#b),
            Value::Ident(i) => {
                let k = self.field(&i.to_string())?;
                let f = &self.fields[k];
                if !matches!(f.ty, NumTy::Usize | NumTy::Bool) {
                    return None;
                }
                let ident = &f.ident;
                quote!(self.#ident)
            }
            Value::Arith(op, a, b, _) => {
                let (a, b) = (self.value(a)?, self.value(b)?);
                let op = match op {
                    ArithOp::Add => quote!(+),
                    // Underflow is a panic in Rust: leave `-` as a flag.
                    ArithOp::Sub => return None,
                    ArithOp::Mul => quote!(*),
                    ArithOp::Div => quote!(/),
                };
                quote!((#a #op #b))
            }
            Value::Float(..) | Value::Tuple(..) | Value::Arrow(..) => return None,
        })
    }
}

fn same(a: &Num, b: &Num) -> bool {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x == y,
        (Num::Float(x), Num::Float(y)) => x.to_bits() == y.to_bits(),
        (Num::Bool(x), Num::Bool(y)) => x == y,
        _ => false,
    }
}
