import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { Logger } from 'nestjs-pino';
import { AppModule } from './app.module.js';
import type { AppConfig } from './config/app-config.js';
import { dashboardUi, webRootOf } from './dashboard/static-ui.js';
import { httpMetricsMiddleware } from './metrics/http-metrics.js';
import { MetricsService } from './metrics/metrics.service.js';

export const OPENAPI_UI_PATH = 'docs';
export const OPENAPI_JSON_PATH = 'docs/openapi.json';

/** Builds the application without listening, so tests and main.ts start it the same way. */
export async function createApp(config: AppConfig): Promise<NestExpressApplication> {
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(config), {
    bufferLogs: true,
    abortOnError: false,
  });
  app.useLogger(app.get(Logger));
  app.disable('x-powered-by');
  app.use(httpMetricsMiddleware(app.get(MetricsService)));
  // The dashboard's front end, ahead of Nest's routes; API and infra paths pass through it.
  const logger = app.get(Logger);
  app.use(dashboardUi(webRootOf(config), (message) => logger.warn(message, 'DashboardUi')));

  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Steward API')
      .setDescription('Service catalog, governance rules, agents and call statistics for Dubbo and Spring Cloud estates.')
      .setVersion('0.1.0')
      .addBearerAuth({
        type: 'http',
        scheme: 'bearer',
        description: 'an API token: stw_<id>.<secret>, or the bootstrap ADMIN_TOKEN',
      })
      .build(),
  );
  SwaggerModule.setup(OPENAPI_UI_PATH, app, document, { jsonDocumentUrl: OPENAPI_JSON_PATH });
  return app;
}
