//! The step every flow (chunked, form, tus) takes between "the file is assembled" and "the file
//! has its name": the approval (the completion hook, when `RESUMABLE_ON_COMPLETE` is set), and
//! the free-space check a new upload passes before anything of it is stored.
//!
//! A flow uses it in one line each:
//!
//! ```text
//! let approve = self.approver(Finisher { client: "form", identifier, user, metadata });
//! let progress = self.store.<its completion>(..., &approve)?;   // Progress::Rejected -> Error::Rejected
//! self.ensure_room_for_new_upload(size)?;                         // before storing a new upload
//! ```

use serde_json::{Map, Value};

use super::Service;
use crate::error::Error;
use crate::hook::{Hook, HookInput, Verdict};
use crate::protocol::Params;
use crate::store::{self, Approval, AssembledFile};

/// Who finished an upload: what the completion hook is told besides the file itself.
#[derive(Debug, Clone)]
pub struct Finisher<'a> {
    /// `resumable`, `flow`, ... for chunk dialects; `form`, `tus` for those flows.
    pub client: &'a str,
    pub identifier: &'a str,
    pub user: Option<&'a str>,
    /// tus metadata, form fields, or a chunk request's query and form fields.
    pub metadata: Map<String, Value>,
}

impl Service {
    /// The approval step to hand to the store's completion: runs the completion hook when one
    /// is configured (under the upload's lock, so once per file), publishes at once otherwise.
    pub fn approver<'a>(
        &'a self,
        finisher: Finisher<'a>,
    ) -> impl Fn(&AssembledFile<'_>) -> store::Result<Approval> + 'a {
        move |file: &AssembledFile<'_>| {
            let Some(program) = &self.config.on_complete else {
                return Ok(Approval::Publish { data: None });
            };
            let hook = Hook {
                program: program.clone(),
                timeout: self.config.hook_timeout,
            };
            let input = HookInput {
                path: file.path,
                name: file.name,
                size: file.size,
                identifier: finisher.identifier,
                client: finisher.client,
                user: finisher.user,
                metadata: &finisher.metadata,
            };
            match hook.run(&input, &self.config.settings)? {
                Verdict::Accept { data } => {
                    log::info!("completion hook accepted {:?}", file.name);
                    Ok(Approval::Publish { data })
                }
                Verdict::Reject { reason } => {
                    log::warn!("completion hook refused {:?}: {reason}", file.name);
                    Ok(Approval::Reject { reason })
                }
            }
        }
    }

    /// Refuses a new upload of `size` bytes (before anything of it is stored) when its parts
    /// and its assembled file would leave less free than `RESUMABLE_MIN_FREE_SPACE`. Uploads
    /// already running are not asked: refusing their last chunks would waste what they sent.
    pub fn ensure_room_for_new_upload(
        &self,
        temp_bytes: u64,
        upload_bytes: u64,
    ) -> Result<(), Error> {
        self.store
            .ensure_room(temp_bytes, upload_bytes, self.config.min_free_space)
            .map_err(Error::from)
    }
}

/// Request parameters as hook metadata: each name once, with its first value.
pub fn metadata_of(params: &Params) -> Map<String, Value> {
    let mut map = Map::new();
    for (name, value) in params.iter() {
        map.entry(name.to_string())
            .or_insert_with(|| Value::String(value.to_string()));
    }
    map
}
