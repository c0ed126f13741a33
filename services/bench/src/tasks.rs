//! Waiting for a run's worker tasks: the first failure ends the others, so a run stops on
//! its first error instead of waiting for every other worker to notice.

use tokio::task::JoinSet;

use crate::error::BenchError;

/// Waits for every task; on the first failure aborts the others and returns it.
pub async fn join_all(tasks: &mut JoinSet<Result<(), BenchError>>) -> Result<(), BenchError> {
    while let Some(joined) = tasks.join_next().await {
        let failure = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(error)) => error,
            Err(error) => BenchError::Task(error.to_string()),
        };
        tasks.abort_all();
        return Err(failure);
    }
    Ok(())
}
