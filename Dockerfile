# The Ledgerlock image: one binary, `ledgerlock api` or `ledgerlock worker` by command.
FROM node:20.20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY bin ./bin
COPY src ./src
COPY workflows ./workflows
COPY activities ./activities
COPY tsconfig.json ./
# AUDIT_CHECKPOINT_DIR in docker-compose.yml: a volume mounted here keeps this owner.
RUN mkdir -p /var/lib/ledgerlock/audit-checkpoints && chown node:node /var/lib/ledgerlock/audit-checkpoints
USER node
ENTRYPOINT ["node", "bin/ledgerlock.js"]
CMD ["api"]
