//! OpenAI's list object, `{object: "list", data, first_id, last_id, has_more}`, and its
//! cursors: `after` names the last id of the previous page, `before` the first id of the next
//! (the page just before it; `has_more` then says whether there are more before).

use crate::error::AdminError;
use crate::params::Params;
use axum::Json;
use serde::Serialize;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct List<T> {
    pub object: &'static str,
    pub data: Vec<T>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}

/// Something a list holds: it has an id.
pub trait Listed {
    fn id(&self) -> &str;
}

impl<T: Listed> List<T> {
    /// A page of `items` (already in list order): up to `limit` after the item `after` names.
    /// An `after` that names nothing in the list is a 400 naming `after`.
    pub fn page(items: Vec<T>, params: &Params) -> Result<Json<List<T>>, AdminError> {
        List::page_of(items.into_iter().map(|i| (i, true)).collect(), params)
    }

    /// A page of the listed ones of `items` (in list order, with whether each is listed): the
    /// cursor may name one that is no longer listed (a key deleted, a project archived since
    /// the last page), so that a client deleting as it pages keeps its place.
    pub fn page_of(items: Vec<(T, bool)>, params: &Params) -> Result<Json<List<T>>, AdminError> {
        List::page_of_default(items, params, 20)
    }

    /// [`List::page`] for a list whose `limit` defaults to `default` (OpenAI's is 20 for most
    /// lists, 100 for some).
    pub fn page_with_default(
        items: Vec<T>,
        params: &Params,
        default: i64,
    ) -> Result<Json<List<T>>, AdminError> {
        List::page_of_default(
            items.into_iter().map(|i| (i, true)).collect(),
            params,
            default,
        )
    }

    fn page_of_default(
        items: Vec<(T, bool)>,
        params: &Params,
        default: i64,
    ) -> Result<Json<List<T>>, AdminError> {
        let limit = usize::try_from(params.limit(default, 100)?).unwrap_or(20);
        let position = |cursor: &str, name: &str| {
            items
                .iter()
                .position(|(item, _)| item.id() == cursor)
                .ok_or_else(|| {
                    AdminError::param(
                        name,
                        format!("Invalid '{name}': no object with id '{cursor}' is in this list."),
                    )
                })
        };
        if let Some(before) = params.one("before").filter(|b| !b.is_empty()) {
            if params.one("after").is_some_and(|a| !a.is_empty()) {
                return Err(AdminError::param(
                    "before",
                    "Give 'after' or 'before', not both.",
                ));
            }
            // The `limit` listed ones just before the cursor, in list order.
            let end = position(before, "before")?;
            let mut earlier: Vec<T> = items
                .into_iter()
                .take(end)
                .filter(|(_, listed)| *listed)
                .map(|(item, _)| item)
                .collect();
            let skip = earlier.len().saturating_sub(limit);
            let data = earlier.split_off(skip);
            return Ok(Json(List::of(data, skip > 0)));
        }
        let start = match params.one("after").filter(|a| !a.is_empty()) {
            None => 0,
            Some(after) => position(after, "after")? + 1,
        };
        let mut rest = items.into_iter().skip(start).filter(|(_, listed)| *listed);
        let data: Vec<T> = rest.by_ref().take(limit).map(|(item, _)| item).collect();
        let has_more = rest.next().is_some();
        Ok(Json(List::of(data, has_more)))
    }

    /// A list of exactly these items.
    pub fn of(data: Vec<T>, has_more: bool) -> List<T> {
        List {
            object: "list",
            first_id: data.first().map(|i| i.id().to_owned()),
            last_id: data.last().map(|i| i.id().to_owned()),
            data,
            has_more,
        }
    }
}
