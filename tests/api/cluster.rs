//! A cluster for the tests: several real `ingest` processes on one fresh PostgreSQL database
//! and one fresh S3-compatible bucket (moto), each with a data dir of its own (nothing on local
//! disk is shared), as an operator runs them behind a load balancer.
use crate::{
    helpers::{ApiClient, Credential, Server, TOKEN},
    postgres::TestDatabase,
    s3::{TestBucket, ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY},
};

/// The nodes, the database and the bucket they share. Nodes are killed when this is dropped,
/// before the database and bucket go.
pub struct Cluster {
    // Dropped first (fields drop in order): the nodes let go of the database and bucket.
    nodes: Vec<Option<Server>>,
    dirs: Vec<tempfile::TempDir>,
    env: Vec<(String, String)>,
    /// Dropped (with its connections) after the nodes are gone.
    database: TestDatabase,
    pub bucket: TestBucket,
}

impl Cluster {
    /// `count` nodes with the test defaults (no processing delay).
    pub async fn start(count: usize) -> Cluster {
        Cluster::start_with(count, &[]).await
    }

    /// `count` nodes with `env` on top of what every node gets (the shared database and
    /// bucket, the token).
    pub async fn start_with(count: usize, env: &[(&str, &str)]) -> Cluster {
        Cluster::start_some(count, count, env).await
    }

    /// Places for `count` nodes with `env`, of which only the first `running` are started
    /// (the others join later, with `restart`).
    pub async fn start_some(count: usize, running: usize, env: &[(&str, &str)]) -> Cluster {
        let database = TestDatabase::create().await;
        let bucket = TestBucket::create().await;
        let mut shared = vec![
            ("INGEST_DATABASE_URL".to_owned(), database.url_text()),
            (
                "INGEST_BLOB_STORE".to_owned(),
                format!("s3://{}/cluster", bucket.name),
            ),
            ("INGEST_S3_ENDPOINT".to_owned(), bucket.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".to_owned(), ACCESS_KEY_ID.to_owned()),
            (
                "AWS_SECRET_ACCESS_KEY".to_owned(),
                SECRET_ACCESS_KEY.to_owned(),
            ),
            ("AWS_REGION".to_owned(), REGION.to_owned()),
        ];
        shared.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let mut cluster = Cluster {
            nodes: Vec::new(),
            dirs: Vec::new(),
            env: shared,
            database,
            bucket,
        };
        for _ in 0..count {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("data")).unwrap();
            cluster.dirs.push(dir);
            cluster.nodes.push(None);
        }
        // One at a time: the first runs the migrations.
        for index in 0..running {
            cluster.restart(index).await;
        }
        cluster
    }

    /// Node `index` (panics if it was killed and not restarted).
    pub fn node(&self, index: usize) -> &Server {
        self.nodes[index].as_ref().expect("the node is running")
    }

    /// Kills node `index` with SIGKILL: no shutdown code runs.
    pub fn kill_9(&mut self, index: usize) {
        if let Some(mut node) = self.nodes[index].take() {
            node.kill_9();
        }
    }

    /// (Re)starts node `index` on its own data dir (a new port), and waits until it answers.
    pub async fn restart(&mut self, index: usize) {
        self.kill_9(index);
        let data = self.dirs[index].path().join("data");
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let node = Server::start_with(&data, &format!("node{index}.log"), &env).await;
        self.nodes[index] = Some(node);
    }

    /// Every running node's log, labelled: for assertion messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(index, node)| Some(format!("--- node {index}\n{}", node.as_ref()?.log())))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// How many connections of the nodes are `LISTEN`ing (the last statement they ran).
    pub async fn listeners(&self) -> i64 {
        self.count_listeners(false).await
    }

    /// Has PostgreSQL end every node's listening connection, as a restart or a network cut
    /// would; returns how many it ended.
    pub async fn drop_listeners(&self) -> i64 {
        self.count_listeners(true).await
    }

    async fn count_listeners(&self, terminate: bool) -> i64 {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(&self.database.url_text())
            .await
            .expect("connecting to the cluster's database");
        let what = if terminate {
            "count(pg_terminate_backend(pid))"
        } else {
            "count(*)"
        };
        sqlx::query_scalar(&format!(
            "SELECT {what} FROM pg_stat_activity WHERE datname = current_database() \
             AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        ))
        .fetch_one(&mut connection)
        .await
        .expect("reading pg_stat_activity")
    }

    /// A caller of node `index` holding the token (the built-in admin).
    pub fn admin(&self, index: usize) -> ApiClient {
        self.caller(index, Credential::Bearer(TOKEN.to_owned()))
    }

    /// A caller of node `index` holding `credential`.
    pub fn caller(&self, index: usize, credential: Credential) -> ApiClient {
        ApiClient::at(self.node(index).address(), credential)
    }
}
