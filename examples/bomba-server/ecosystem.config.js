// pm2 process file for the example server, in cluster mode:
//
//   pm2 start examples/bomba-server/ecosystem.config.js            # env
//   pm2 start examples/bomba-server/ecosystem.config.js --env production
//   pm2 logs bomba
//   pm2 reload bomba                                                # zero-downtime restart
//
// Both instances write to the same local MongoDB and share one SYNC_DATA_DIR:
// each appends to the journal there, one of them (the holder of
// <SYNC_DATA_DIR>/leader.lock) replicates for all. The directory must be on a
// local disk (file locks), never on NFS. Real secrets belong in the server's
// environment, not in this file.
const path = require('node:path')

const common = {
  MONGODB_URI: 'mongodb://127.0.0.1:27017/bomba',
  SYNC_DATA_DIR: path.join(__dirname, 'dual-mongo-sync-data'),
  SYNC_BATCH_SIZE: '500',
  SYNC_WORKERS: '4',
  SYNC_HEALTH_MAX_QUEUE: '100',
  SYNC_HEALTH_MIN_SUCCESS_RATE: '0.99',
  SYNC_LOG_LEVEL: 'info',
  PORT: '3000',
}

module.exports = {
  apps: [
    {
      name: 'bomba',
      script: 'server.js',
      cwd: __dirname,
      exec_mode: 'cluster',
      instances: 2,
      // server.js closes HTTP, then awaits sync.close({ timeoutMs: 10000 }):
      // give it that long plus a margin before pm2 sends SIGKILL. Nothing is
      // lost if it is killed anyway: the queue is in the journal on disk.
      kill_timeout: 15000,
      // server.js calls process.send('ready') once it listens.
      wait_ready: true,
      listen_timeout: 30000,
      env: {
        ...common,
        NODE_ENV: 'development',
        // Phase 1 of the migration guide: deploy with replication off.
        SYNC_ENABLED: 'false',
      },
      env_production: {
        ...common,
        NODE_ENV: 'production',
        // The shell's SYNC_ENABLED wins, so the emergency disable works
        // without editing this file:
        //   SYNC_ENABLED=false pm2 reload ecosystem.config.js --env production --update-env
        // (a value written here would override the shell's and a .env file's).
        SYNC_ENABLED: process.env.SYNC_ENABLED ?? 'true',
        // Set in the server's environment (or a secrets manager), e.g.
        //   export MONGODB_ATLAS_URI='mongodb+srv://user:password@cluster0.example.mongodb.net/bomba'
        //   export SYNC_ADMIN_TOKEN="$(openssl rand -hex 24)"
        MONGODB_ATLAS_URI: process.env.MONGODB_ATLAS_URI,
        SYNC_ADMIN_TOKEN: process.env.SYNC_ADMIN_TOKEN,
        SYNC_EXCLUDED_COLLECTIONS: 'sessions',
      },
    },
  ],
}
