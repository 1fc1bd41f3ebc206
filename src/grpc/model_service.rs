//! `tensorflow.serving.ModelService`: GetModelStatus and HandleReloadConfigRequest.

use tonic::{Request, Response, Status};
use tracing::info;

use super::error::to_status;
use super::GrpcState;
use crate::core::{ServingError, ServingResult, VersionStatus};
use crate::proto::tensorflow::serving::model_service_server::ModelService;
use crate::proto::tensorflow::serving::{
    GetModelStatusRequest, GetModelStatusResponse, ModelVersionStatus, ReloadConfigRequest, ReloadConfigResponse,
    StatusProto,
};

/// The ModelService implementation.
#[derive(Clone)]
pub struct ModelServiceImpl {
    state: GrpcState,
}

impl ModelServiceImpl {
    pub fn new(state: GrpcState) -> Self {
        Self { state }
    }

    fn status_request(&self, request: GetModelStatusRequest) -> ServingResult<GetModelStatusResponse> {
        let spec = request.model_spec.ok_or_else(|| ServingError::invalid_argument("Missing ModelSpec"))?;
        // NOTE: as in TF Serving, a version label is ignored and every version is listed.
        let version = match spec.version_choice {
            Some(crate::proto::tensorflow::serving::model_spec::VersionChoice::Version(version)) => Some(version),
            _ => None,
        };
        let statuses = self.state.manager.model_status(&spec.name, version)?;
        Ok(GetModelStatusResponse { model_version_status: statuses.iter().map(version_status_proto).collect() })
    }
}

fn version_status_proto(status: &VersionStatus) -> ModelVersionStatus {
    let (error_code, error_message) = match &status.error {
        Some(error) => (error.code as i32, error.message.clone()),
        None => (0, String::new()),
    };
    ModelVersionStatus {
        version: status.version,
        state: status.state as i32,
        status: Some(StatusProto { error_code, error_message }),
    }
}

#[tonic::async_trait]
impl ModelService for ModelServiceImpl {
    async fn get_model_status(
        &self,
        request: Request<GetModelStatusRequest>,
    ) -> Result<Response<GetModelStatusResponse>, Status> {
        self.status_request(request.into_inner()).map(Response::new).map_err(to_status)
    }

    async fn handle_reload_config_request(
        &self,
        request: Request<ReloadConfigRequest>,
    ) -> Result<Response<ReloadConfigResponse>, Status> {
        let deadline = super::model_spec::deadline(request.metadata());
        let request = request.into_inner();
        let config = request.config.unwrap_or_default();
        self.state.reloader.reload(config, deadline).await.map_err(to_status)?;
        if !request.metric_names.is_empty() {
            info!(metrics = ?request.metric_names, "reload metrics are not tracked; none are returned");
        }
        Ok(Response::new(ReloadConfigResponse {
            status: Some(StatusProto { error_code: 0, error_message: String::new() }),
            metric: Vec::new(),
        }))
    }
}
