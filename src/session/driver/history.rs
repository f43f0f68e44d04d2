//! Creating conversation items from the client side: seeding a session with a saved history,
//! editing the history, and replaying it on a new connection.

use futures::future::BoxFuture;
use std::collections::{HashMap, HashSet};

use super::{Driver, HistoryEdit};
use crate::RealtimeSessionEvent;
use crate::items::RealtimeItem;
use crate::model::ModelCommand;

impl Driver {
    /// An id for an item the application gave without one (ids are at most 32 characters),
    /// unused in this conversation (a seeded history may hold ids from an earlier session).
    fn fresh_item_id(&mut self) -> String {
        loop {
            self.next_item_id += 1;
            let id = format!("item_ra{:016x}", self.next_item_id);
            if self.history.get(&id).is_none() {
                return id;
            }
        }
    }

    /// Creates `item` on the server after `previous` (`None`: at the end) and in the local
    /// history, reporting it as added.
    fn create_item(
        &mut self,
        mut item: RealtimeItem,
        previous: Option<String>,
    ) -> impl Future<Output = String> + Send + '_ {
        async move {
            if item.item_id().is_empty() {
                let id = self.fresh_item_id();
                item.set_item_id(id);
            }
            self.own_items.insert(item.item_id().to_owned());
            self.send(ModelCommand::CreateItem {
                item: Box::new(item.clone()),
                previous_item_id: previous,
            })
            .await;
            let id = item.item_id().to_owned();
            self.history.upsert(item);
            if let Some(item) = self.history.get(&id).cloned() {
                self.emit(RealtimeSessionEvent::HistoryAdded { item }).await;
            }
            id
        }
    }

    /// Re-creates a saved conversation before anything else happens.
    pub(super) fn seed_history(&mut self, items: Vec<RealtimeItem>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            tracing::debug!(items = items.len(), "seeding history");
            for mut item in items {
                item.set_previous_item_id(None);
                self.create_item(item, None).await;
            }
        })
    }

    /// Re-creates the local history on a new connection (after a reconnect); returns how many
    /// items were sent.
    pub(super) async fn replay_history(&mut self) -> usize {
        if !self.caps.create_items {
            // The backend cannot take items: the new connection starts without the history.
            tracing::warn!("the backend cannot re-create the history after a reconnect");
            return 0;
        }
        let items = self.history.items().to_vec();
        let count = items.len();
        for item in items {
            self.own_items.insert(item.item_id().to_owned());
            self.send(ModelCommand::CreateItem {
                item: Box::new(item),
                previous_item_id: None,
            })
            .await;
        }
        count
    }

    /// Applies an edit: items that are gone or changed are deleted; changed and new items are
    /// (re-)created in their new place.
    pub(super) fn update_history(&mut self, edit: HistoryEdit) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let old = self.history.items().to_vec();
            let wanted = (edit.0)(&old);
            let old_index: HashMap<&str, usize> = old
                .iter()
                .enumerate()
                .map(|(i, item)| (item.item_id(), i))
                .collect();
            // Items kept as they are, in their old order; anything out of that order is re-created.
            let mut kept = HashSet::new();
            let mut last_kept = 0;
            for item in &wanted {
                let id = item.item_id();
                let Some(&index) = old_index.get(id) else {
                    continue;
                };
                if index >= last_kept && same_item(&old[index], item) {
                    last_kept = index;
                    kept.insert(id.to_owned());
                }
            }
            for item in &old {
                let id = item.item_id();
                if !kept.contains(id) {
                    self.send(ModelCommand::DeleteItem {
                        item_id: id.to_owned(),
                    })
                    .await;
                    self.own_items.remove(id);
                    if self.history.remove(id) {
                        self.emit(RealtimeSessionEvent::HistoryDeleted {
                            item_id: id.to_owned(),
                        })
                        .await;
                    }
                }
            }
            let mut previous: Option<String> = None;
            for mut item in wanted {
                let id = item.item_id().to_owned();
                if kept.contains(&id) {
                    previous = Some(id);
                    continue;
                }
                if !id.is_empty() && self.history.get(&id).is_some() {
                    // The same id twice in the edit: the second one gets a new id.
                    item.set_item_id(String::new());
                }
                let after = previous.take().unwrap_or_else(|| "root".to_owned());
                item.set_previous_item_id(Some(after.clone()));
                previous = Some(self.create_item(item, Some(after)).await);
            }
        })
    }
}

/// Whether an edit left the item as it was (ignoring its place).
fn same_item(a: &RealtimeItem, b: &RealtimeItem) -> bool {
    let mut a = a.clone();
    let mut b = b.clone();
    a.set_previous_item_id(None);
    b.set_previous_item_id(None);
    a == b
}
